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
