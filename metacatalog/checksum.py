"""The catalog's file checksum, adler32 (as XRootD and Rucio use): one implementation for every
path that computes it (ingest, replication, integrity checks, subscriptions).

Intel's ISA-L (``isal``) computes it at about 19 GB/s here against 2.8 for zlib's; replication
checks every byte it copies, so zlib's is a fallback only (an install without isal).
"""

from __future__ import annotations

from pathlib import Path

try:
    from isal.isal_zlib import adler32 as _adler32
except ImportError:  # pragma: no cover - isal is an island dependency
    from zlib import adler32 as _adler32

__all__ = ["adler32", "file_adler32"]

_BLOCK = 4 << 20


def adler32(data, value: int = 1) -> int:
    """adler32 of ``data`` (bytes-like), continuing from ``value``."""
    return _adler32(data, value) & 0xFFFFFFFF


def file_adler32(path: str | Path) -> tuple[int, int]:
    """(adler32, size) of a file, read once in large blocks."""
    checksum, size = 1, 0
    with open(path, "rb", buffering=0) as f:
        while block := f.read(_BLOCK):
            checksum = _adler32(block, checksum)
            size += len(block)
    return checksum & 0xFFFFFFFF, size
