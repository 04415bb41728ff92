"""VOSI documents of the TAP service: capabilities, availability and tables (the datasets the
caller may read, with their columns' VOTable types, units and UCDs)."""

from __future__ import annotations

from xml.sax.saxutils import escape

import pyarrow as pa

from archipel.errors import NotFound
from island.web.tapquery import DEFAULT_MAXREC, HARD_MAXREC, VOTABLE
from island.web.tapschema import adql_name, schema_of, tap_schema_tables
from island.web.votable import ColumnMeta, column_meta, votable_type

__all__ = ["capabilities_xml", "tables_xml", "table_xml", "availability_xml"]

_GEO = ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS", "DISTANCE")


def capabilities_xml(base: str) -> str:
    feats = "".join(f"        <feature><form>{g}</form></feature>\n" for g in _GEO)
    fmts = [("ivo://ivoa.net/std/TAPRegExt#output-votable-binary2", f"{VOTABLE};serialization=BINARY2", "votable"),
            ("ivo://ivoa.net/std/TAPRegExt#output-votable-td", f"{VOTABLE};serialization=TABLEDATA", "votable/td"),
            ("", "text/csv", "csv"), ("", "application/vnd.apache.parquet", "parquet")]
    out_formats = "".join(
        f'    <outputFormat{f" ivo-id={chr(34)}{i}{chr(34)}" if i else ""}>\n      <mime>{escape(m)}</mime>\n'
        f"      <alias>{a}</alias>\n    </outputFormat>\n" for i, m, a in fmts)

    def vosi(kind: str, path: str) -> str:
        return (f'  <capability standardID="ivo://ivoa.net/std/VOSI#{kind}">\n'
                f'    <interface xsi:type="vs:ParamHTTP" role="std">\n'
                f'      <accessURL use="full">{escape(base)}/tap/{path}</accessURL>\n    </interface>\n'
                "  </capability>\n")

    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"\n'
            '    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
            '    xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0"\n'
            '    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"\n'
            '    xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">\n'
            '  <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">\n'
            '    <interface xsi:type="vs:ParamHTTP" role="std" version="1.1">\n'
            f'      <accessURL use="base">{escape(base)}/tap</accessURL>\n    </interface>\n'
            "    <language>\n      <name>ADQL</name>\n"
            '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>\n'
            '      <version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>\n'
            "      <description>ADQL translated to the island's SQL; geometry pruned by HEALPix</description>\n"
            '      <languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">\n'
            f"{feats}      </languageFeatures>\n    </language>\n"
            f"{out_formats}"
            "    <retentionPeriod>\n      <default>604800</default>\n      <hard>604800</hard>\n"
            "    </retentionPeriod>\n"
            "    <executionDuration>\n      <default>3600</default>\n      <hard>86400</hard>\n"
            "    </executionDuration>\n"
            f'    <outputLimit>\n      <default unit="row">{DEFAULT_MAXREC}</default>\n'
            f'      <hard unit="row">{HARD_MAXREC}</hard>\n    </outputLimit>\n'
            "  </capability>\n"
            + vosi("capabilities", "capabilities") + vosi("availability", "availability") + vosi("tables", "tables")
            + "</vosi:capabilities>\n")


def _column_xml(f: pa.Field, meta: ColumnMeta, indexed: bool) -> str:
    datatype, arraysize, _ = votable_type(f.type)
    size = f' arraysize="{arraysize}"' if arraysize else ""
    parts = [f"        <name>{escape(adql_name(f.name))}</name>\n"]
    if meta.description:
        parts.append(f"        <description>{escape(meta.description)}</description>\n")
    if meta.unit:
        parts.append(f"        <unit>{escape(meta.unit)}</unit>\n")
    if meta.ucd:
        parts.append(f"        <ucd>{escape(meta.ucd)}</ucd>\n")
    parts.append(f'        <dataType xsi:type="vs:VOTableType"{size}>{datatype}</dataType>\n')
    if indexed:
        parts.append("        <flag>indexed</flag>\n")
    return "      <column>\n" + "".join(parts) + "      </column>\n"


def _foreign_keys(name: str) -> str:
    from island.web.tapschema import _KEYS

    return "".join(f"      <foreignKey>\n        <targetTable>TAP_SCHEMA.{t}</targetTable>\n"
                   f"        <fkColumn>\n          <fromColumn>{fc}</fromColumn>\n"
                   f"          <targetColumn>{tc}</targetColumn>\n        </fkColumn>\n      </foreignKey>\n"
                   for _, f, fc, t, tc in _KEYS if f"TAP_SCHEMA.{f}" == name)


def _table_xml(name: str, desc: str, schema: pa.Schema | None, ra: str = "", dec: str = "",
               indent: str = "    ") -> str:
    cols = ""
    if schema is not None:
        meta = column_meta(schema, ra, dec)
        cols = "".join(_column_xml(f, meta[f.name], f.name in (ra, dec)) for f in schema) + _foreign_keys(name)
    return (f'{indent}<table type="output">\n      <name>{escape(name)}</name>\n'
            f"      <description>{escape(desc)}</description>\n{cols}{indent}</table>\n")


def tables_xml(client, detail: str = "max") -> str:
    datasets = client.datasets()
    tables = tap_schema_tables(datasets)
    described = {r["table_name"]: r["description"] for r in tables["tables"].to_pylist()}
    schemas: dict[str, list[str]] = {}
    from island.web.tapschema import _TAP_COLUMNS  # the TAP_SCHEMA tables' own columns

    for name, cols in _TAP_COLUMNS.items():
        schemas.setdefault("TAP_SCHEMA", []).append(
            _table_xml(f"TAP_SCHEMA.{name}", described[f"TAP_SCHEMA.{name}"],
                       pa.schema(cols) if detail != "min" else None))
    for d in sorted(datasets, key=lambda d: d.name):
        schemas.setdefault(schema_of(d.name), []).append(
            _table_xml(d.name, described[d.name], d.schema if detail != "min" else None, d.ra_column, d.dec_column))
    body = "".join(f"  <schema>\n    <name>{escape(s)}</name>\n{''.join(ts)}  </schema>\n" for s, ts in schemas.items())
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"\n'
            '    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"\n'
            '    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n' + body + "</vosi:tableset>\n")


def table_xml(client, name: str) -> str:
    from island.web.tapschema import _TAP_COLUMNS

    if name.lower().startswith("tap_schema."):
        short = name.split(".", 1)[1].lower()
        if short not in _TAP_COLUMNS:
            raise NotFound(f"no table {name!r}")
        inner = _table_xml(f"TAP_SCHEMA.{short}", "", pa.schema(_TAP_COLUMNS[short]), indent="")
    else:
        d = client.describe(name)
        inner = _table_xml(d.name, f"Archipel dataset {d.name}", d.schema, d.ra_column, d.dec_column, indent="")
    inner = inner.replace('<table type="output">', '<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
                          'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
                          'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" type="output">', 1)
    inner = inner[: inner.rfind("</table>")] + "</vosi:table>\n"
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + inner


def availability_xml(up: bool, note: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
            f"  <vosi:available>{'true' if up else 'false'}</vosi:available>\n"
            f"  <vosi:note>{escape(note)}</vosi:note>\n</vosi:availability>\n")


# -- routes --------------------------------------------------------------------------------
