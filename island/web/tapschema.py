"""``TAP_SCHEMA`` from the metacatalog: every dataset the caller may read is a table under its
own name (dataset ``a.b`` is table ``a.b`` of schema ``a``), with its columns' VOTable types,
units and UCDs. TAP_SCHEMA describes itself too, as TAP asks."""

from __future__ import annotations

import re

import pyarrow as pa

from archipel.types import DatasetInfo
from island.web.votable import column_meta, votable_type

__all__ = ["tap_schema_tables", "adql_name", "schema_of", "TAP_SCHEMA_DESCRIPTIONS"]

_REGULAR = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# ADQL 2.1's reserved words (its own and SQL's) that a column name must be quoted to be.
_RESERVED = set("""ABS ACOS AREA ASIN ATAN ATAN2 BOX CEILING CENTROID CIRCLE CONTAINS COORD1 COORD2 COORDSYS COS COT
DEGREES DISTANCE EXP FLOOR INTERSECTS LOG LOG10 MOD PI POINT POLYGON POWER RADIANS REGION RAND ROUND SIN SQRT TOP TAN
TRUNCATE ABSOLUTE ACTION ADD ALL ALLOCATE ALTER AND ANY ARE AS ASC ASSERTION AT AUTHORIZATION AVG BEGIN BETWEEN BIT
BIT_LENGTH BOTH BY CASCADE CASCADED CASE CAST CATALOG CHAR CHARACTER CHAR_LENGTH CHARACTER_LENGTH CHECK CLOSE
COALESCE COLLATE COLLATION COLUMN COMMIT CONNECT CONNECTION CONSTRAINT CONSTRAINTS CONTINUE CONVERT CORRESPONDING COUNT
CREATE CROSS CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER CURSOR DATE DAY DEALLOCATE DECIMAL
DECLARE DEFAULT DEFERRABLE DEFERRED DELETE DESC DESCRIBE DESCRIPTOR DIAGNOSTICS DISCONNECT DISTINCT DOMAIN DOUBLE DROP
ELSE END END-EXEC ESCAPE EXCEPT EXCEPTION EXEC EXECUTE EXISTS EXTERNAL EXTRACT FALSE FETCH FIRST FLOAT FOR FOREIGN
FOUND FROM FULL GET GLOBAL GO GOTO GRANT GROUP HAVING HOUR IDENTITY IMMEDIATE IN INDICATOR INITIALLY INNER INPUT
INSENSITIVE INSERT INT INTEGER INTERSECT INTERVAL INTO IS ISOLATION JOIN KEY LANGUAGE LAST LEADING LEFT LEVEL LIKE
LOCAL LOWER MATCH MAX MIN MINUTE MODULE MONTH NAMES NATIONAL NATURAL NCHAR NEXT NO NOT NULL NULLIF NUMERIC
OCTET_LENGTH OF ON ONLY OPEN OPTION OR ORDER OUTER OUTPUT OVERLAPS PAD PARTIAL POSITION PRECISION PREPARE PRESERVE
PRIMARY PRIOR PRIVILEGES PROCEDURE PUBLIC READ REAL REFERENCES RELATIVE RESTRICT REVOKE RIGHT ROLLBACK ROWS SCHEMA
SCROLL SECOND SECTION SELECT SESSION SESSION_USER SET SIZE SMALLINT SOME SPACE SQL SQLCODE SQLERROR SQLSTATE
SUBSTRING SUM SYSTEM_USER TABLE TEMPORARY THEN TIME TIMESTAMP TIMEZONE_HOUR TIMEZONE_MINUTE TO TRAILING TRANSACTION
TRANSLATE TRANSLATION TRIM TRUE UNION UNIQUE UNKNOWN UPDATE UPPER USAGE USER USING VALUE VALUES VARCHAR VARYING VIEW
WHEN WHENEVER WHERE WITH WORK WRITE YEAR ZONE DEC""".split())

TAP_SCHEMA_DESCRIPTIONS = {
    "schemas": "The schemas of this service", "tables": "The tables of this service",
    "columns": "The columns of the tables", "keys": "Foreign keys between tables",
    "key_columns": "The columns of the foreign keys",
}

_TAP_COLUMNS = {
    "schemas": [("schema_name", pa.string()), ("description", pa.string()), ("utype", pa.string()),
                ("schema_index", pa.int32())],
    "tables": [("schema_name", pa.string()), ("table_name", pa.string()), ("table_type", pa.string()),
               ("description", pa.string()), ("utype", pa.string()), ("table_index", pa.int32())],
    "columns": [("table_name", pa.string()), ("column_name", pa.string()), ("datatype", pa.string()),
                ("arraysize", pa.string()), ("xtype", pa.string()), ("size", pa.int32()),
                ("description", pa.string()), ("utype", pa.string()), ("unit", pa.string()), ("ucd", pa.string()),
                ("indexed", pa.int32()), ("principal", pa.int32()), ("std", pa.int32()),
                ("column_index", pa.int32())],
    "keys": [("key_id", pa.string()), ("from_table", pa.string()), ("target_table", pa.string()),
             ("description", pa.string()), ("utype", pa.string())],
    "key_columns": [("key_id", pa.string()), ("from_column", pa.string()), ("target_column", pa.string())],
}


# TAP_SCHEMA's own foreign keys: (key_id, from table, column, target table, column).
_KEYS = [
    ("tables_schema", "tables", "schema_name", "schemas", "schema_name"),
    ("columns_table", "columns", "table_name", "tables", "table_name"),
    ("keys_from", "keys", "from_table", "tables", "table_name"),
    ("keys_target", "keys", "target_table", "tables", "table_name"),
    ("key_columns_key", "key_columns", "key_id", "keys", "key_id"),
]


def adql_name(name: str) -> str:
    """A column name as written in ADQL: quoted when it is not a regular identifier."""
    if _REGULAR.match(name) and name.upper() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def schema_of(table: str) -> str:
    parts = table.split(".")
    return ".".join(parts[:-1]) if len(parts) > 1 else "default"


def _tap_schema_self() -> list[tuple[str, pa.Schema, dict[str, tuple[str, str]]]]:
    return [(f"TAP_SCHEMA.{t}", pa.schema(cols), {}) for t, cols in _TAP_COLUMNS.items()]


def tap_schema_tables(datasets: list[DatasetInfo]) -> dict[str, pa.Table]:
    """The five TAP_SCHEMA tables (name -> Arrow table) describing ``datasets`` and themselves."""
    schemas: dict[str, str] = {"TAP_SCHEMA": "The TAP service's description of its own tables"}
    tables, columns = [], []
    entries = [(name, schema, TAP_SCHEMA_DESCRIPTIONS[name.split(".")[1]], "", "") for name, schema, _ in
               _tap_schema_self()]
    for d in sorted(datasets, key=lambda d: d.name):
        desc = (f"Archipel dataset {d.name} ({d.kind}, {d.num_rows} rows, held by island {d.origin})"
                + (f"; sky columns {d.ra_column}, {d.dec_column}" if d.ra_column else ""))
        entries.append((d.name, d.schema, desc, d.ra_column, d.dec_column))
        schemas.setdefault(schema_of(d.name), f"Datasets of the {schema_of(d.name)} family")
    for t_index, (name, schema, desc, ra, dec) in enumerate(entries):
        tables.append({"schema_name": schema_of(name), "table_name": name, "table_type": "table",
                       "description": desc, "utype": None, "table_index": t_index})
        meta = column_meta(schema, ra, dec)
        for c_index, f in enumerate(schema):
            datatype, arraysize, xtype = votable_type(f.type)
            m = meta[f.name]
            columns.append({"table_name": name, "column_name": adql_name(f.name), "datatype": datatype,
                            "arraysize": arraysize, "xtype": xtype, "size": None,
                            "description": m.description or None, "utype": None, "unit": m.unit or None,
                            "ucd": m.ucd or None, "indexed": 1 if f.name in (ra, dec) else 0,
                            "principal": 1 if f.name in (ra, dec) or c_index < 8 else 0,
                            "std": 1 if name.startswith("TAP_SCHEMA.") else 0, "column_index": c_index})
    rows = {
        "schemas": [{"schema_name": s, "description": d, "utype": None, "schema_index": i}
                    for i, (s, d) in enumerate(schemas.items())],
        "tables": tables, "columns": columns,
        "keys": [{"key_id": k, "from_table": f"TAP_SCHEMA.{f}", "target_table": f"TAP_SCHEMA.{t}",
                  "description": f"{f}.{fc} refers to {t}.{tc}", "utype": None} for k, f, fc, t, tc in _KEYS],
        "key_columns": [{"key_id": k, "from_column": fc, "target_column": tc} for k, _, fc, _, tc in _KEYS],
    }
    return {t: pa.Table.from_pylist(rows[t], schema=pa.schema(cols)) for t, cols in _TAP_COLUMNS.items()}
