"""Comparing query answers: same columns and types, same rows in any order, floating-point
values equal to 1e-12 (parallel aggregation sums in a varying order)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest


def canonical(table: pa.Table) -> pa.Table:
    return table.sort_by([(c, "ascending") for c in table.column_names]) if table.num_rows else table


def assert_same_answer(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    assert [f.type for f in a.schema] == [f.type for f in b.schema], (a.schema, b.schema)
    a, b = canonical(a), canonical(b)
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a[name].to_pylist(), b[name].to_pylist()
        if pa.types.is_floating(a.schema.field(name).type):
            for u, v in zip(x, y):
                assert (u is None and v is None) or (math.isnan(u) and math.isnan(v)) or u == pytest.approx(v, rel=1e-12)
        else:
            assert x == y, name
