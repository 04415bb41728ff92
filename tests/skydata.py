"""A synthetic all-sky catalog with crowds at both poles and across ra = 0/360, and the
pyarrow/numpy truth of cone searches on it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

BANDS = np.array(["g", "r", "i", "z", "y"])


def sky_table(n: int = 30_000, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    k = n // 4
    # uniform on the sphere
    ra = rng.uniform(0, 360, n - 3 * k)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n - 3 * k)))
    # near the north and south poles
    ra_n, dec_n = rng.uniform(0, 360, k), 90 - np.abs(rng.normal(0, 0.8, k))
    ra_s, dec_s = rng.uniform(0, 360, k), -90 + np.abs(rng.normal(0, 0.8, k))
    # across ra = 0/360
    ra_w = np.mod(rng.normal(0, 0.7, k), 360.0)
    dec_w = rng.normal(10, 0.7, k)
    ra = np.concatenate([ra, ra_n, ra_s, ra_w])
    dec = np.clip(np.concatenate([dec, dec_n, dec_s, dec_w]), -90, 90)
    mag = rng.normal(18, 2, n).round(3)
    mag_err = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0.01, 0.2, n))
    return pa.table({
        "id": pa.array(np.arange(n, dtype=np.int64)),
        "ra": pa.array(ra),
        "dec": pa.array(dec),
        "mag": pa.array(mag),
        "mag_err": pa.array(mag_err, from_pandas=True),
        "band": pa.array(BANDS[rng.integers(0, len(BANDS), n)]),
        "flags": pa.array(rng.integers(0, 4, n).astype(np.int32)),
    })


def angular_distance(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Radians, by the same haversine the islands run."""
    h = (np.sin(np.radians(dec - dec0) * 0.5) ** 2
         + np.cos(np.radians(dec)) * np.cos(np.radians(dec0)) * np.sin(np.radians(ra - ra0) * 0.5) ** 2)
    return 2 * np.arcsin(np.sqrt(np.minimum(1.0, h)))  # radians


def cone_truth(table: pa.Table, ra0: float, dec0: float, r: float, ra: str = "ra", dec: str = "dec") -> set[int]:
    d = angular_distance(table[ra].to_numpy(), table[dec].to_numpy(), ra0, dec0)
    ids = table["id"].to_numpy() if "id" in table.column_names else table["source_id"].to_numpy()
    return set(ids[d <= np.radians(r)].tolist())


def shared_join_truth(hats_root) -> pa.Table:
    """pyarrow's answer to joining the shared small_sky_source to small_sky_order1 on object id,
    grouped by object: object_id, source_id_count, mag_mean; sorted by object_id."""
    import pyarrow.parquet as pq

    objects = pq.read_table(hats_root / "small_sky_o1_collection" / "small_sky_order1" / "dataset")
    sources = pq.read_table(hats_root / "small_sky_source" / "dataset")
    return (sources.join(objects.select(["id"]), keys="object_id", right_keys="id")
            .group_by("object_id").aggregate([("source_id", "count"), ("mag", "mean")]).sort_by("object_id"))
