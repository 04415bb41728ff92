"""Where a HEALPix pixel's data lives in a HATS catalog, as the ``hats`` library lays it out
(``dataset/Norder=K/Dir=D/Npix=N.parquet``, or a folder ``Npix=N/`` of files): the one place the
island asks, for reading, writing, appending and serving HATS."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

__all__ = ["pixel_file", "pixel_relpath", "parse_pixel_relpath"]

_ROOT = PurePosixPath("/")
_PIXEL = re.compile(r"^dataset/Norder=(\d{1,2})/Dir=(\d{1,12})/Npix=(\d{1,15})\.parquet$")


def pixel_relpath(order: int, pixel: int, suffix: str = ".parquet") -> str:
    """The pixel's path relative to its catalog's folder; ``suffix="/"`` for its folder form."""
    # hats (and the astropy, pandas and mocpy it loads) is imported at the first use, not at
    # the island's start: 1.5 s of every start and every command otherwise.
    from hats.io import paths
    from hats.pixel_math import HealpixPixel

    full = str(paths.pixel_catalog_file(Path(_ROOT), HealpixPixel(order, pixel), npix_suffix=suffix))
    return str(PurePosixPath(full).relative_to(_ROOT)) + ("/" if suffix.endswith("/") else "")


def pixel_file(catalog: Path, order: int, pixel: int, suffix: str = ".parquet") -> Path:
    """The pixel's file (or, with ``suffix="/"``, folder) under the catalog folder ``catalog``."""
    return catalog / pixel_relpath(order, pixel, suffix)


def parse_pixel_relpath(rel: str) -> tuple[int, int] | None:
    """(order, pixel) of a pixel file's relative path in the HATS layout; None for any other."""
    m = _PIXEL.match(rel)
    if m is None:
        return None
    order, pixel = int(m.group(1)), int(m.group(3))
    return (order, pixel) if pixel_relpath(order, pixel) == rel else None
