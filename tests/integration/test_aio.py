"""The asyncio client: many concurrent queries from one event loop against a real island."""

from __future__ import annotations

import asyncio

import pytest

import archipel
import archipel.aio
from skydata import cone_truth


def test_many_concurrent_queries(island, sky):
    cones = [(ra, dec, 2.0) for ra in (0.0, 90.0, 180.0, 270.0) for dec in (-89.0, -30.0, 0.0, 30.0, 89.0)]

    async def main():
        async with archipel.aio.connect(island.address) as c:
            assert (await c.info())["name"] == "alpha"

            async def one(ra, dec, r):
                res = await c.sql(f"SELECT id FROM test.allsky WHERE cone(ra, dec, {ra}, {dec}, {r})")
                return set((await res.read_all())["id"].to_pylist())

            return await asyncio.gather(*(one(*cone) for cone in cones))

    results = asyncio.run(main())
    for cone, got in zip(cones, results):
        assert got == cone_truth(sky[0], *cone)


def test_async_errors_and_describe(island):
    async def main():
        async with archipel.aio.connect(island.address) as c:
            d = await c.describe("sky.order1")
            assert d.num_rows == 131
            with pytest.raises(archipel.NotFound):
                await c.sql("SELECT * FROM no.such")
            with pytest.raises(archipel.PermissionDenied):
                await c.sql("DROP TABLE sky.order1")
            plan = await c.explain("SELECT * FROM sky.order1 WHERE cone(ra, dec, 315, -60, 1)")
            assert plan.engine == "arrow"
            streamed = 0
            res = await c.sql("SELECT * FROM test.allsky", compression="lz4")
            async for batch in res:
                streamed += batch.num_rows
            assert streamed == 30_000 and res.stats.num_rows == 30_000

    asyncio.run(main())
