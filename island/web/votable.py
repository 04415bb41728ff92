"""Arrow tables as IVOA VOTable 1.4 documents (astropy writes them), with the units, UCDs and
descriptions the catalog holds, and the TAP ``QUERY_STATUS`` marks (OK, OVERFLOW, ERROR)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["ColumnMeta", "votable_type", "table_to_votable", "error_votable", "column_meta"]


@dataclass(frozen=True)
class ColumnMeta:
    unit: str = ""
    ucd: str = ""
    description: str = ""


def column_meta(schema: pa.Schema, ra: str = "", dec: str = "") -> dict[str, ColumnMeta]:
    """Units, UCDs and descriptions of a dataset's columns: from its Arrow field metadata
    (``unit``, ``ucd``, ``description``), and for its sky columns, degrees and pos.eq.*."""
    out = {}
    for f in schema:
        md = {k.decode(errors="replace").lower(): v.decode(errors="replace") for k, v in (f.metadata or {}).items()}
        unit, ucd = md.get("unit", ""), md.get("ucd", "")
        if f.name == ra:
            unit, ucd = unit or "deg", ucd or "pos.eq.ra;meta.main"
        elif f.name == dec:
            unit, ucd = unit or "deg", ucd or "pos.eq.dec;meta.main"
        out[f.name] = ColumnMeta(unit, ucd, md.get("description", md.get("doc", "")))
    return out


def votable_type(t: pa.DataType) -> tuple[str, str | None, str | None]:
    """(VOTable datatype, arraysize, xtype) of an Arrow type."""
    if pa.types.is_boolean(t):
        return "boolean", None, None
    if pa.types.is_uint8(t):
        return "unsignedByte", None, None
    if pa.types.is_int8(t) or pa.types.is_int16(t):
        return "short", None, None
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "int", None, None
    if pa.types.is_integer(t):
        return "long", None, None
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float", None, None
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "double", None, None
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "char", "*", "timestamp"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "unsignedByte", "*", None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "unicodeChar", "*", None
    return "char", "*", None  # lists and structs, as JSON text


def _column(col: pa.ChunkedArray, datatype: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask) for astropy: strings as str objects, numbers with nulls masked."""
    mask = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else np.zeros(len(col), bool)
    t = col.type
    if datatype in ("char", "unicodeChar"):
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            values = [v.isoformat() if v is not None else "" for v in col.to_pylist()]
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            values = [v if v is not None else "" for v in col.to_pylist()]
        else:
            values = [json.dumps(v, default=str) if v is not None else "" for v in col.to_pylist()]
        return np.array(values, dtype=object), mask
    if datatype == "unsignedByte" and (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        values = [np.frombuffer(v or b"", dtype=np.uint8) for v in col.to_pylist()]
        return np.array(values + [None], dtype=object)[:-1], mask
    if datatype == "boolean":
        return col.fill_null(False).to_numpy(zero_copy_only=False).astype(bool), mask
    np_type = {"unsignedByte": np.uint8, "short": np.int16, "int": np.int32, "long": np.int64, "float": np.float32,
               "double": np.float64}[datatype]
    filled = col.fill_null(0) if col.null_count else col
    if pa.types.is_decimal(t):
        filled = filled.cast(pa.float64())
    return filled.to_numpy(zero_copy_only=False).astype(np_type), mask


def table_to_votable(table: pa.Table, meta: dict[str, ColumnMeta] | None = None, *, overflow: bool = False,
                     serialization: str = "binary2", infos: dict[str, str] | None = None) -> bytes:
    """A VOTable document holding ``table`` in a results RESOURCE; ``overflow`` marks a result
    cut at MAXREC (an INFO QUERY_STATUS=OVERFLOW after the TABLE, as TAP asks)."""
    from astropy.io.votable.tree import Field, Info, Resource, TableElement, VOTableFile

    meta = meta or {}
    vot = VOTableFile(version="1.4")
    res = Resource(type="results")
    vot.resources.append(res)
    res.infos.append(Info(name="QUERY_STATUS", value="OK"))
    for k, v in (infos or {}).items():
        res.infos.append(Info(name=k, value=str(v)))
    t = TableElement(vot, name="results")
    res.tables.append(t)
    types = []
    seen: dict[str, int] = {}
    for f in table.schema:
        datatype, arraysize, xtype = votable_type(f.type)
        types.append(datatype)
        m = meta.get(f.name, ColumnMeta())
        n = seen[f.name] = seen.get(f.name, 0) + 1
        ident = f.name if n == 1 else f"{f.name}_{n}"
        field = Field(vot, name=f.name, ID=None, datatype=datatype, arraysize=arraysize, unit=m.unit or None,
                      ucd=m.ucd or None, xtype=xtype)
        if ident != f.name:
            field.name = ident
        if m.description:
            field.description = m.description
        t.fields.append(field)
    t.create_arrays(table.num_rows)
    for i, (f, datatype) in enumerate(zip(table.schema, types)):
        values, mask = _column(table.column(i), datatype)
        name = t.fields[i].name
        t.array[name] = values
        t.array.mask[name] = mask
    t.format = serialization
    buf = io.BytesIO()
    vot.to_xml(buf, tabledata_format=serialization if serialization == "tabledata" else None)
    doc = buf.getvalue()
    if overflow:
        doc = doc.replace(b"</TABLE>", b'</TABLE>\n  <INFO name="QUERY_STATUS" value="OVERFLOW"/>', 1)
    return doc


def error_votable(message: str) -> bytes:
    """The VOTable of a failed TAP query: QUERY_STATUS=ERROR with the message."""
    from xml.sax.saxutils import escape

    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
            ' <RESOURCE type="results">\n'
            f'  <INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
            ' </RESOURCE>\n</VOTABLE>\n').encode()
