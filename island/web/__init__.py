"""The island's HTTP face: a JSON/Arrow API, a web page, IVOA TAP and Simple Cone Search,
and HATS over HTTP, on the island's HTTP port beside the partition files it serves to other
islands. Every route that reads the archipelago calls the island's own gRPC API as the
caller (their bearer token), so routing, replication, access rights, limits and error
messages are the ones of gRPC, implemented once."""
