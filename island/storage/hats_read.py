"""Reading what lies at a path: a HATS collection, a HATS catalog, or plain Parquet.

Existing HATS catalogs are registered where they are; nothing is copied. The result is a list
of ``Found`` records that the ingest turns into catalog datasets.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from archipel.errors import InvalidArgument
from island.storage.files import parquet_partition, read_parquet_schema
from island.storage.pixels import pixel_file
from metacatalog.model import Partition

__all__ = ["Found", "scan_path", "scan_hats_catalog", "read_properties", "parquet_files", "sky_columns", "SKY_COLUMN_NAMES"]

# (ra, dec) column names recognised without --ra/--dec, compared case-insensitively.
SKY_COLUMN_NAMES = [("ra", "dec"), ("ra_deg", "dec_deg"), ("raj2000", "dej2000"), ("s_ra", "s_dec"),
                    ("ra_icrs", "de_icrs")]
_KINDS = {"object": "catalog", "source": "source", "margin": "margin", "index": "index",
          "association": "table", "map": "table"}
_HIVE_COLUMNS = {"Norder", "Dir", "Npix"}


@dataclass
class Found:
    """A dataset found at a path, ready to be registered under ``name``."""

    name: str
    kind: str
    root: Path
    partitions: list[Partition]
    schema: pa.Schema
    ra_column: str = ""
    dec_column: str = ""
    properties: dict[str, str] = field(default_factory=dict)


def read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: cannot read HATS properties: {exc}") from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip()
    return props


def _properties_file(folder: Path) -> Path | None:
    for name in ("hats.properties", "properties"):
        if (folder / name).is_file():
            return folder / name
    return None


def parquet_files(path: Path) -> list[Path]:
    """The data files at a path: the file itself, or every *.parquet below a folder."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not p.name.startswith(("_", ".")))
    if not files:
        raise InvalidArgument(f"{path} holds no .parquet files")
    return files


def _hats_partitions(folder: Path) -> list[Partition]:
    data = folder / "dataset"
    info = folder / "partition_info.csv"
    pixels: list[tuple[int, int]] = []
    if info.is_file():
        try:
            with open(info, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    pixels.append((int(row["Norder"]), int(row["Npix"])))
        except (KeyError, ValueError, csv.Error) as exc:
            raise InvalidArgument(f"{info}: malformed partition_info.csv ({exc})") from None
    else:
        for p in sorted(data.glob("Norder=*/Dir=*/Npix=*.parquet")):
            try:
                pixels.append((int(p.parent.parent.name.split("=")[1]), int(p.stem.split("=")[1])))
            except (IndexError, ValueError):
                raise InvalidArgument(f"{p}: not a HATS pixel file name") from None
    parts = []
    for order, pixel in pixels:
        path = pixel_file(folder, order, pixel)
        if not path.is_file():
            # HATS also allows a folder of files per pixel.
            folder_path = path.with_suffix("")
            if folder_path.is_dir():
                parts.extend(parquet_partition(f, folder, order, pixel) for f in parquet_files(folder_path))
                continue
            raise InvalidArgument(f"HATS catalog {folder}: partition file {path} is missing")
        parts.append(parquet_partition(path, folder, order, pixel))
    return parts  # may be empty: a margin catalog of a small catalog can hold no rows


def _strip_hive(schema: pa.Schema) -> pa.Schema:
    keep = [f for f in schema if f.name not in _HIVE_COLUMNS]
    return pa.schema(keep, metadata=schema.metadata)


def scan_hats_catalog(folder: Path, name: str) -> Found:
    props = read_properties(_properties_file(folder))  # type: ignore[arg-type]
    product = props.get("dataproduct_type", "object")
    kind = _KINDS.get(product, "table")
    if kind == "index":
        files = parquet_files(folder / "dataset")
        parts = [parquet_partition(f, folder) for f in files]
    else:
        parts = _hats_partitions(folder)
    if parts:
        schema = _strip_hive(read_parquet_schema(folder / parts[0].path))
    elif (folder / "dataset" / "_common_metadata").is_file():
        schema = _strip_hive(read_parquet_schema(folder / "dataset" / "_common_metadata"))
    else:
        raise InvalidArgument(f"HATS catalog {folder} has no partitions and no dataset/_common_metadata")
    ra, dec = props.get("hats_col_ra", ""), props.get("hats_col_dec", "")
    if kind not in ("catalog", "source", "margin"):
        ra = dec = ""
    for col in (ra, dec):
        if col and col not in schema.names:
            raise InvalidArgument(f"HATS catalog {folder}: sky column {col!r} is not in its schema")
    return Found(name=name, kind=kind, root=folder, partitions=parts, schema=schema,
                 ra_column=ra, dec_column=dec, properties=props)


def _sub_name(primary_dir: str, sub_dir: str, name: str) -> str:
    suffix = sub_dir[len(primary_dir):] if sub_dir.startswith(primary_dir) else "_" + sub_dir
    suffix = suffix if suffix.startswith("_") else "_" + suffix
    return name + suffix


def scan_path(path: Path, name: str) -> list[Found] | None:
    """HATS datasets at ``path`` (a collection gives several), or None if it is not HATS."""
    if not path.exists():
        raise InvalidArgument(f"{path} does not exist")
    if path.is_dir() and (path / "collection.properties").is_file():
        props = read_properties(path / "collection.properties")
        primary = props.get("hats_primary_table_url", "")
        if not primary or not (path / primary).is_dir():
            raise InvalidArgument(f"HATS collection {path}: primary catalog {primary!r} not found")
        found = [scan_hats_catalog(path / primary, name)]
        subs = props.get("all_margins", "").split()
        index_words = props.get("all_indexes", "").split()
        subs += index_words[1::2]  # "column dir column dir ..."
        for sub in subs:
            if (path / sub).is_dir():
                found.append(scan_hats_catalog(path / sub, _sub_name(primary, sub, name)))
        return found
    if path.is_dir() and _properties_file(path) is not None and (path / "dataset").is_dir():
        return [scan_hats_catalog(path, name)]
    return None


def sky_columns(schema: pa.Schema, ra: str = "", dec: str = "") -> tuple[str, str]:
    """The (ra, dec) columns: the ones given, else recognised names, else ("", "")."""
    if ra or dec:
        if not (ra and dec):
            raise InvalidArgument("give both --ra and --dec, or neither")
        for col in (ra, dec):
            if col not in schema.names:
                raise InvalidArgument(f"column {col!r} is not in the data (columns: {', '.join(schema.names)})")
            if not pa.types.is_floating(schema.field(col).type) and not pa.types.is_integer(schema.field(col).type):
                raise InvalidArgument(f"sky column {col!r} must be numeric, not {schema.field(col).type}")
        return ra, dec
    lower = {n.lower(): n for n in schema.names}
    for r, d in SKY_COLUMN_NAMES:
        if r in lower and d in lower:
            rt, dt = schema.field(lower[r]).type, schema.field(lower[d]).type
            if pa.types.is_floating(rt) and pa.types.is_floating(dt):
                return lower[r], lower[d]
    return "", ""
