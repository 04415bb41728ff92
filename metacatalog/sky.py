"""HEALPix and MOC geometry of the catalog: cones to pixels, pixels to coverage.

Nested HEALPix numbering throughout; HATS partitions are (order, pixel) pairs, rows carry a
``_healpix_29`` index at order 29.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from archipel.errors import InvalidArgument

__all__ = ["parse_moc", "partitions_in_moc", 
    "Cone",
    "healpix29",
    "cone_pixels",
    "partitions_in_cone",
    "healpix29_ranges",
    "healpix29_inner_ranges",
    "moc_from_pixels",
    "check_cone",
]

HEALPIX_MAX_ORDER = 29
WIDE_CONE_DEG = 90.0


class Cone:
    """A cone on the sky in degrees: centre (ra, dec) and radius."""

    __slots__ = ("ra", "dec", "radius")

    def __init__(self, ra: float, dec: float, radius: float) -> None:
        self.ra, self.dec, self.radius = check_cone(ra, dec, radius)

    def __repr__(self) -> str:
        return f"Cone(ra={self.ra}, dec={self.dec}, radius={self.radius})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cone) and (self.ra, self.dec, self.radius) == (other.ra, other.dec, other.radius)


def check_cone(ra: float, dec: float, radius: float) -> tuple[float, float, float]:
    try:
        ra, dec, radius = float(ra), float(dec), float(radius)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"cone needs numbers for ra, dec and radius: {exc}") from None
    if not all(np.isfinite([ra, dec, radius])):
        raise InvalidArgument("cone ra, dec and radius must be finite numbers")
    if not -90.0 <= dec <= 90.0:
        raise InvalidArgument(f"cone dec {dec} is outside [-90, 90] degrees")
    if radius < 0:
        raise InvalidArgument(f"cone radius {radius} is negative")
    return ra % 360.0, dec, min(radius, 180.0)


def healpix29(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """The order-29 nested HEALPix index of each position (degrees)."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import lonlat_to_healpix

    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0, dtype=np.int64)
    if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
        raise InvalidArgument("sky columns contain null, NaN or infinite positions")
    if (np.abs(dec) > 90).any():
        raise InvalidArgument("declination values outside [-90, 90] degrees")
    pix = lonlat_to_healpix(Longitude(ra % 360.0, unit=u.deg), Latitude(dec, unit=u.deg), HEALPIX_MAX_ORDER)
    return np.asarray(pix, dtype=np.int64)


def cone_pixels(cone: Cone, order: int) -> np.ndarray:
    """Every pixel of the given order that overlaps the cone (conservative: never misses one)."""
    if cone.radius >= WIDE_CONE_DEG:
        # cdshealpix drops cells for cones near a hemisphere or wider (seen at 179 deg); such a
        # cone covers half the sky or more, so every pixel is kept rather than risk a miss.
        return np.arange(12 * 4**order, dtype=np.int64)
    ipix, _depth = _cone_cells(cone.ra, cone.dec, max(cone.radius, 1e-9), order, flat=True)
    return np.unique(np.asarray(ipix, dtype=np.int64))


def _cone_cells(ra: float, dec: float, radius: float, order: int, flat: bool) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, their orders) of every cell that overlaps a cone (degrees): all of ``order``
    when ``flat``, else as a MOC (cells inside it at coarser orders). cdshealpix's cone search."""
    import astropy.units as u
    from astropy.coordinates import Angle, Latitude, Longitude
    from cdshealpix.nested import cone_search

    ipix, depth, _full = cone_search(Longitude(ra, unit=u.deg), Latitude(dec, unit=u.deg),
                                     Angle(radius, unit=u.deg), depth=order, flat=flat)
    return ipix, depth


def partitions_in_cone(pixels: Sequence[tuple[int, int]], cone: Cone) -> list[bool]:
    """For (order, pixel) partitions of mixed orders, whether each can hold rows in the cone."""
    if not pixels:
        return []
    depth = max(o for o, _ in pixels)
    cells = cone_pixels(cone, depth)
    out = []
    for order, pixel in pixels:
        shift = 2 * (depth - order)
        lo, hi = pixel << shift, (pixel + 1) << shift
        i = np.searchsorted(cells, lo)
        out.append(bool(i < len(cells) and cells[i] < hi))
    return out


def healpix29_ranges(cone: Cone, max_ranges: int = 32) -> list[tuple[int, int]]:
    """Inclusive ranges of order-29 indices that hold every position in the cone (conservative),
    from the cone's pixels at an order about four times finer than its radius, coarsened until
    they merge into at most ``max_ranges`` ranges. Empty for cones too wide to be worth it."""
    if cone.radius >= WIDE_CONE_DEG:
        return []
    order = int(np.clip(np.ceil(np.log2(117.3 / max(cone.radius, 1e-7))), 0, 20))
    while True:
        pix = cone_pixels(cone, order)
        breaks = np.flatnonzero(np.diff(pix) != 1) + 1
        starts, ends = pix[np.concatenate([[0], breaks])], pix[np.concatenate([breaks - 1, [len(pix) - 1]])]
        if len(starts) <= max_ranges or order == 0:
            shift = 2 * (HEALPIX_MAX_ORDER - order)
            return [(int(a) << shift, ((int(b) + 1) << shift) - 1) for a, b in zip(starts, ends)]
        order -= 1


# The mean size of an order-0 HEALPix cell in degrees (sqrt(4 pi / 12) radians); order k's is
# this over 2**k. No corner of a cell lies farther than 1.045 of it from the cell's centre
# (every cell of orders 0-9, sampled cells of orders 12-20; tests/unit/test_sky.py checks the margin).
_CELL_DEG = 58.6323


def healpix29_inner_ranges(cone: Cone, cells_per_radius: int = 64) -> list[tuple[int, int]]:
    """Inclusive ranges of order-29 indices whose every position lies inside the cone: the
    cells of an order about ``cells_per_radius`` cells to the radius that meet the cone narrowed
    by three cell sizes (a cell is at most 2.1 sizes across), merged. A row whose index lies in
    one needs no distance test; the cone's edge is at least 0.9 cell sizes away from it, far
    beyond rounding. Empty for cones too small or too wide to be worth it."""
    if not 0 < cone.radius < WIDE_CONE_DEG:
        return []
    order = int(np.clip(np.ceil(np.log2(_CELL_DEG * cells_per_radius / cone.radius)), 0, 20))
    narrowed = cone.radius - 3 * _CELL_DEG / 2**order
    if narrowed <= 0:
        return []
    ipix, depth = _cone_cells(cone.ra, cone.dec, narrowed, order, flat=False)
    shift = 2 * (HEALPIX_MAX_ORDER - np.asarray(depth, dtype=np.uint64))
    lows = np.asarray(ipix, dtype=np.uint64) << shift
    highs = ((np.asarray(ipix, dtype=np.uint64) + np.uint64(1)) << shift) - np.uint64(1)
    at = np.argsort(lows)
    lows, highs = lows[at], highs[at]  # the cells are disjoint: merged where one ends as the next begins
    starts = np.flatnonzero(np.concatenate([[True], lows[1:] > highs[:-1] + np.uint64(1)]))
    ends = np.concatenate([starts[1:] - 1, [len(lows) - 1]])
    return list(zip(lows[starts].tolist(), highs[ends].tolist()))


def moc_from_pixels(pixels: Iterable[tuple[int, int]]) -> tuple[str, float]:
    """The coverage of (order, pixel) cells as an ASCII MOC and its sky fraction."""
    from mocpy import MOC

    pixels = list(pixels)
    if not pixels:
        return "", 0.0
    orders = np.array([o for o, _ in pixels], dtype=np.uint8)
    ipix = np.array([p for _, p in pixels], dtype=np.uint64)
    max_depth = int(orders.max())
    moc = MOC.from_healpix_cells(ipix, orders, max_depth)
    return moc.to_string(format="ascii").strip(), float(moc.sky_fraction)


def parse_moc(data: bytes | str):
    """A MOC from the bytes of a FITS, JSON or ASCII MOC file; raises InvalidArgument."""
    import json

    from mocpy import MOC

    try:
        if isinstance(data, bytes) and data.startswith(b"SIMPLE"):
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".fits") as f:
                f.write(data)
                f.flush()
                moc = MOC.from_fits(f.name)
        else:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            text = text.strip()
            if not text:
                raise ValueError("empty MOC")
            moc = MOC.from_json(json.loads(text)) if text.startswith("{") else MOC.from_str(text)
    except InvalidArgument:
        raise
    except Exception as exc:
        raise InvalidArgument(f"not a MOC (FITS, JSON or ASCII): {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}") from None
    if moc.empty():
        raise InvalidArgument("the MOC covers no sky")
    return moc


def partitions_in_moc(pixels: Sequence[tuple[int, int]], moc) -> list[bool]:
    """For (order, pixel) partitions, whether each overlaps ``moc``."""
    ranges = np.asarray(moc.to_depth29_ranges, dtype=np.uint64)
    starts, ends = ranges[:, 0], ranges[:, 1]
    out = []
    for order, pixel in pixels:
        shift = np.uint64(2 * (29 - order))
        lo, hi = np.uint64(pixel) << shift, np.uint64(pixel + 1) << shift
        i = int(np.searchsorted(ends, lo, side="right"))  # first range ending after lo
        out.append(bool(i < len(starts) and starts[i] < hi))
    return out


def moc_outline(moc_text: str, max_cells: int = 3072, step: int = 2) -> list[list[tuple[float, float]]]:
    """The cells of an ASCII MOC as (ra, dec) polygons for drawing, degraded to a coarser
    order until at most ``max_cells`` remain."""
    import astropy.units as u
    from cdshealpix.nested import vertices
    from mocpy import MOC

    if not moc_text.strip():
        return []
    moc = parse_moc(moc_text)
    order = int(moc.max_order)
    ipix = moc.flatten()
    while order > 0 and len(ipix) > max_cells:
        order -= 1
        ipix = moc.degrade_to_order(order).flatten()
    ipix = ipix.astype(np.uint64)
    if len(ipix) == 0:
        return []
    lon, lat = vertices(ipix, order, step=step)
    lon, lat = lon.to_value(u.deg), lat.to_value(u.deg)
    return [[(round(float(a), 4), round(float(d), 4)) for a, d in zip(lo, la)] for lo, la in zip(lon, lat)]
