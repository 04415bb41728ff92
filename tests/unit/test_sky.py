import numpy as np
import pytest

from archipel.errors import InvalidArgument
from metacatalog.sky import Cone, cone_pixels, healpix29, moc_from_pixels, partitions_in_cone
from skydata import angular_distance


def test_cone_pixels_never_miss_a_matching_position():
    rng = np.random.default_rng(3)
    n = 200_000
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    h = healpix29(ra, dec)
    for ra0, dec0, r in [(0, 90, 3), (0, -90, 10), (359.9, 0, 2), (120, 45, 40), (10, 20, 89), (5, 5, 150)]:
        inside = angular_distance(ra, dec, ra0, dec0) <= np.radians(r)
        for order in (0, 3, 6):
            pix = set(cone_pixels(Cone(ra0, dec0, r), order).tolist())
            assert set((h[inside] >> (2 * (29 - order))).tolist()) <= pix


def test_partitions_of_mixed_orders():
    cone = Cone(315, -60, 0.5)
    pix3 = cone_pixels(cone, 3)
    parts = [(0, 0), (1, int(pix3[0] >> 4)), (3, int(pix3[0])), (3, int((pix3[0] + 7) % 768))]
    keep = partitions_in_cone(parts, cone)
    assert keep[1] and keep[2]


def test_cone_validation():
    with pytest.raises(InvalidArgument, match="negative"):
        Cone(1, 2, -1)
    with pytest.raises(InvalidArgument, match="outside"):
        Cone(1, 91, 1)
    with pytest.raises(InvalidArgument, match="finite"):
        Cone(float("nan"), 0, 1)
    assert Cone(-10, 0, 1).ra == 350


def test_healpix29_refuses_bad_positions():
    with pytest.raises(InvalidArgument):
        healpix29(np.array([1.0, np.nan]), np.array([0.0, 0.0]))
    with pytest.raises(InvalidArgument):
        healpix29(np.array([1.0]), np.array([91.0]))


def test_moc_merges_children():
    moc, frac = moc_from_pixels([(1, 44), (1, 45), (1, 46), (1, 47)])
    assert moc.split()[0] == "0/11" and frac == pytest.approx(1 / 12)
    assert moc_from_pixels([]) == ("", 0.0)


def test_healpix29_ranges_hold_every_position_in_the_cone():
    from metacatalog.sky import healpix29_ranges

    rng = np.random.default_rng(5)
    for ra0, dec0, r in [(315, -60, 0.5), (0, 90, 1), (359.99, 0, 0.05), (10, 20, 30), (100, -89.9, 2)]:
        ranges = healpix29_ranges(Cone(ra0, dec0, r))
        assert 0 < len(ranges) <= 32
        # random positions inside the cone
        n = 20_000
        ra = (ra0 + rng.uniform(-3, 3, n) * r / max(np.cos(np.radians(min(abs(dec0), 89.0))), 0.02)) % 360
        dec = np.clip(dec0 + rng.uniform(-r, r, n), -90, 90)
        inside = angular_distance(ra, dec, ra0, dec0) <= np.radians(r)
        h = healpix29(ra[inside], dec[inside])
        covered = np.zeros(len(h), dtype=bool)
        for lo, hi in ranges:
            covered |= (h >= lo) & (h <= hi)
        assert covered.all()
    assert healpix29_ranges(Cone(0, 0, 120)) == []


def _around(ra0: float, dec0: float, distance: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions at the given distances (degrees) and position angles from (ra0, dec0)."""
    a, d0, th = np.radians(distance), np.radians(dec0), angle
    dec = np.arcsin(np.clip(np.sin(d0) * np.cos(a) + np.cos(d0) * np.sin(a) * np.cos(th), -1, 1))
    ra = np.radians(ra0) + np.arctan2(np.sin(th) * np.sin(a) * np.cos(d0), np.cos(a) - np.sin(d0) * np.sin(dec))
    return np.degrees(ra) % 360.0, np.degrees(dec)


@pytest.mark.parametrize("cone", [(315, -60, 0.5), (0, 90, 1), (359.99, 0, 0.05), (10, 20, 30), (100, -89.9, 2),
                                  (120, 30, 10), (200, 5, 60), (45, 45, 0.001)])
def test_healpix29_inner_ranges_hold_only_positions_inside_the_cone(cone):
    """Every position whose order-29 index lies in an inner range is inside the cone, those
    crowded at its edge included; and the inner ranges hold most of the cone."""
    from metacatalog.sky import healpix29_inner_ranges

    ra0, dec0, r = cone
    ranges = healpix29_inner_ranges(Cone(ra0, dec0, r))
    assert ranges == sorted(ranges) and all(a <= b < c for (a, b), (c, _) in zip(ranges, ranges[1:]))
    rng = np.random.default_rng(7)
    n = 100_000
    # positions over the cone and just beyond it, and positions crowded at its edge
    distance = np.concatenate([r * 1.1 * np.sqrt(rng.uniform(0, 1, n)), r * (1 + rng.normal(0, 0.01, n))])
    ra, dec = _around(ra0, dec0, np.abs(distance), rng.uniform(0, 2 * np.pi, 2 * n))
    h = healpix29(ra, dec)
    lows, highs = np.array([a for a, _ in ranges], dtype=np.int64), np.array([b for _, b in ranges], dtype=np.int64)
    at = np.searchsorted(lows, h, side="right") - 1
    held = (at >= 0) & (h <= highs[np.maximum(at, 0)])
    dist = np.degrees(angular_distance(ra, dec, ra0, dec0))
    assert (dist[held] < r).all()
    well_inside = dist < 0.8 * r
    assert held[well_inside].mean() > 0.95, held[well_inside].mean()


def test_healpix29_inner_ranges_are_empty_for_cones_without_inside():
    from metacatalog.sky import healpix29_inner_ranges

    assert healpix29_inner_ranges(Cone(10, 10, 0)) == []
    assert healpix29_inner_ranges(Cone(10, 10, 90)) == []
    assert healpix29_inner_ranges(Cone(10, 10, 1e-9)) == []
