"""Local storage of an island: HATS catalogs and plain Parquet tables on disk."""

from island.storage.files import parquet_partition
from island.storage.hats_read import scan_path
from island.storage.hats_write import write_hats_catalog

__all__ = ["parquet_partition", "scan_path", "write_hats_catalog"]
