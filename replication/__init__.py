"""The mover: Celery app and tasks, transfers (root:// through XRootD's client, http(s):// through the
standard library), adler32 verification in
the same pass as the copy, atomic placement and cache eviction. Knows the catalog store, nothing
of gRPC or Spark."""
