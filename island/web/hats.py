"""HATS over HTTP: every sky dataset this island holds whole (its own, and complete replicas)
as a HATS catalog at ``/hats/<dataset>/``, readable by ``lsdb.open_catalog`` and ``hats``.

The catalog's metadata files (``hats.properties``, ``partition_info.csv``,
``dataset/_common_metadata``) are written from the metacatalog; the partition files are the
files held here, at their HATS paths ``dataset/Norder=K/Dir=D/Npix=N.parquet``. A pixel with
several files (rows appended later) is served as one file, their rows written together once
into the island's ``cache/hats/`` under a name made of the files' checksums (so it is never
stale); HATS readers do not list pixel folders over HTTP."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from archipel.arrowwire import read_schema
from archipel.errors import InvalidArgument, NotFound
from archipel.names import check_partition_path
from island.storage.pixels import parse_pixel_relpath, pixel_relpath
from metacatalog.model import SKY_KINDS, Dataset, Partition
from metacatalog.store import CatalogStore

__all__ = ["HatsView", "hats_path", "properties_text"]

_KIND = {"catalog": "object", "object": "object", "source": "source", "margin": "margin"}
_DROPPED = ("hats_skymap_order", "hats_skymap_alt_orders", "hats_npix_suffix", "hats_nrows", "obs_collection",
            "dataproduct_type", "hats_estsize", "hats_col_ra", "hats_col_dec")
def hats_path(order: int, pixel: int, suffix: str = ".parquet") -> str:
    return pixel_relpath(order, pixel, suffix)


def properties_text(ds: Dataset) -> str:
    props = {k: v for k, v in ds.hats_properties.items() if k not in _DROPPED and "\n" not in k + v and "=" not in k}
    lines = ["#HATS catalog (written by an Archipel island from its metacatalog)",
             f"obs_collection={ds.name}", f"dataproduct_type={_KIND.get(ds.kind, 'object')}",
             f"hats_nrows={ds.num_rows}", f"hats_col_ra={ds.ra_column}", f"hats_col_dec={ds.dec_column}",
             "hats_npix_suffix=.parquet"]
    props.setdefault("hats_col_healpix", "_healpix_29")
    props.setdefault("hats_col_healpix_order", "29")
    props.setdefault("hats_version", "v1.0")
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Served:
    """What a HATS path answers: a file held here, or bytes written now (or a listing)."""

    path: Path | None = None
    data: bytes | None = None
    content_type: str = "application/octet-stream"


class HatsView:
    """The HATS catalog view of the datasets held here."""

    def __init__(self, store: CatalogStore, export: Path, here: str, cache: Path) -> None:
        self.store = store
        self.export = export
        self.here = here
        self.cache = cache

    def dataset(self, name: str) -> Dataset:
        """The dataset if it is a sky catalog held whole here; NotFound says why not."""
        ds = self.store.dataset(name)
        if ds.kind not in SKY_KINDS or not any(p.has_pixel for p in ds.partitions):
            raise NotFound(f"dataset {name!r} is a plain table, not a HATS catalog")
        if ds.origin != self.here:
            have = self.store.valid_replicas(name)
            missing = [p for p in ds.partitions if p.pid not in have]
            if missing:
                http = (self.store.islands().get(ds.origin) or ("", ""))[0]
                where = f"{http[:-len('/data')]}/hats/{name}/" if http.endswith("/data") else f"island {ds.origin}"
                raise NotFound(f"island {self.here} holds {len(ds.partitions) - len(missing)} of the "
                               f"{len(ds.partitions)} partitions of {name!r}: read it as HATS at its origin, "
                               f"{where} (describe lists every island holding it whole)")
        return ds

    @staticmethod
    def _pixels(ds: Dataset) -> dict[tuple[int, int], list[Partition]]:
        out: dict[tuple[int, int], list[Partition]] = {}
        for p in ds.partitions:
            if p.has_pixel:
                out.setdefault((p.order, p.pixel), []).append(p)
        for parts in out.values():
            parts.sort(key=lambda p: p.path)
        return out

    def serve(self, name: str, path: str) -> Served:
        ds = self.dataset(name)
        pixels = self._pixels(ds)
        path = path.strip("/") if path not in ("", "/") else ""
        if path in ("hats.properties", "properties"):
            return Served(data=properties_text(ds).encode(), content_type="text/plain; charset=utf-8")
        if path == "partition_info.csv":
            rows = "".join(f"{o},{p}\n" for o, p in sorted(pixels))
            return Served(data=f"Norder,Npix\n{rows}".encode(), content_type="text/csv; charset=utf-8")
        if path == "dataset/_common_metadata":
            schema = read_schema(ds.arrow_schema)
            buf = io.BytesIO()
            pq.write_metadata(schema, buf)
            return Served(data=buf.getvalue())
        if path == "":
            return Served(data=self._listing(name, [f"/hats/{name}/{n}" for n in
                                                    ("hats.properties", "partition_info.csv", "dataset/")]),
                          content_type="text/html; charset=utf-8")
        found = parse_pixel_relpath(path)
        if found:
            parts = pixels.get(found)
            if parts:
                order, pixel = found
                if len(parts) == 1:
                    return Served(path=self._file(name, parts[0]))
                return Served(path=self._merged(name, order, pixel, parts))
        raise NotFound(f"no HATS file {path!r} in {name!r}")

    def _file(self, name: str, part: Partition) -> Path:
        try:
            check_partition_path(part.pid)
        except InvalidArgument:
            raise NotFound(f"partition {part.pid!r} of {name!r} has a path this island does not serve") from None
        path = self.export / name / part.pid
        if not path.is_file():
            raise NotFound(f"partition {part.pid!r} of {name!r} is not on this island's disk")
        return path

    def _merged(self, name: str, order: int, pixel: int, parts: list[Partition]) -> Path:
        """One file holding the rows of a pixel's several files, written once."""
        digest = hashlib.sha256(repr([(p.pid, p.adler32, p.num_bytes) for p in parts]).encode()).hexdigest()[:24]
        folder = self.cache / name
        target = folder / f"{order}-{pixel}-{digest}.parquet"
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        tables = [pq.read_table(self._file(name, p)) for p in parts]
        table = pa.concat_tables(tables, promote_options="default")
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
        for old in folder.glob(f"{order}-{pixel}-*.parquet"):
            if old != target:
                old.unlink(missing_ok=True)
        return target

    @staticmethod
    def _listing(title: str, names: list[str]) -> bytes:
        from html import escape

        links = "\n".join(f'<a href="{escape(n)}">{escape(n)}</a><br>' for n in names)
        return f"<!doctype html><html><head><title>{escape(title)}</title></head><body>\n{links}\n</body></html>\n".encode()
