"""The mover: Celery app and tasks, fsspec transfers (root://, http://), adler32 verification in
the same pass as the copy, atomic placement and cache eviction. Knows the catalog store, nothing
of gRPC or Spark."""
