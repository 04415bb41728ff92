"""Ingest: turning paths on the island's disk into catalog datasets, all or nothing.

Existing HATS catalogs (and their collection's margins and indexes) are registered in place.
Plain Parquet with sky columns is partitioned into a new HATS catalog in the island's data
folder; Parquet without sky columns is registered as a plain table. Every item is prepared
in a staging folder first; only when all are ready are they renamed into place and recorded
in one catalog transaction. A failure anywhere leaves neither files nor records behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from archipel.arrowwire import serialize_schema
from archipel.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from archipel.names import check_dataset_name
from island.storage.columns import check_registered_schema, conform_batch, publishable_schema
from island.storage.files import parquet_partition, read_parquet_schema
from island.storage.hats_read import Found, scan_hats_catalog, parquet_files, scan_path, sky_columns
from island.storage.hats_write import write_hats_catalog
from metacatalog.model import Dataset, Partition
from metacatalog.sky import moc_from_pixels
from metacatalog.store import CatalogStore

__all__ = ["IngestItem", "Ingester"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestItem:
    path: str
    dataset: str
    ra: str = ""
    dec: str = ""
    adopt: bool = False  # move plain files into the data folder (published data in staging)
    owner: str = ""
    readers: tuple[str, ...] = ("public",)
    public_after: str = ""


def _to_dataset(found: Found, origin: str, item: IngestItem) -> Dataset:
    moc, frac = moc_from_pixels((p.order, p.pixel) for p in found.partitions if p.has_pixel)
    return Dataset(
        name=found.name,
        origin=origin,
        kind=found.kind,
        root=str(found.root),
        arrow_schema=serialize_schema(found.schema),
        num_rows=sum(p.num_rows for p in found.partitions),
        num_bytes=sum(p.num_bytes for p in found.partitions),
        ra_column=found.ra_column,
        dec_column=found.dec_column,
        hats_properties=found.properties,
        moc=moc,
        sky_fraction=frac,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        partitions=tuple(found.partitions),
        owner=item.owner,
        readers=tuple(item.readers),
        public_after=item.public_after,
    )


class Ingester:
    def __init__(
        self,
        store: CatalogStore,
        data_dir: Path,
        *,
        partition_rows: int,
        max_order: int,
        allowed_roots: list[str] | None = None,
        max_columns: int = 0,
    ) -> None:
        self.store = store
        self.max_columns = max_columns
        self.data_dir = data_dir
        self.partition_rows = partition_rows
        self.max_order = max_order
        self.allowed_roots = [Path(r).resolve() for r in (allowed_roots or [])]
        self.staging = data_dir / ".staging"

    def dataset_dir(self, name: str) -> Path:
        return self.data_dir / "datasets" / name

    def _check_path(self, raw: str) -> Path:
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            raise InvalidArgument("ingest path is empty or malformed")
        path = Path(raw).expanduser().resolve()
        if self.allowed_roots and not any(path.is_relative_to(r) for r in self.allowed_roots):
            raise PermissionDenied(f"{raw} is outside the folders this island ingests from ([ingest] allowed_roots)")
        if not path.exists():
            raise InvalidArgument(f"{raw} does not exist on island disk")
        return path

    def _prepare(self, item: IngestItem, stage: Path, say: Callable[[str], None]) -> list[tuple[Found, Path | None]]:
        """Found datasets and, for each, the staged folder to move into place (or None)."""
        name = check_dataset_name(item.dataset)
        path = self._check_path(item.path)
        hats = scan_path(path, name)
        if hats is not None:
            if item.ra or item.dec:
                logger.info("ignoring --ra/--dec for HATS catalog %s: it names its own sky columns", path)
            for f in hats:
                check_registered_schema(f.schema, self.max_columns, f"{item.path} ({f.name})")
            return [(f, None) for f in hats]
        files = parquet_files(path)
        schema = read_parquet_schema(files[0])
        for f in files[1:]:
            other = read_parquet_schema(f)
            if not other.remove_metadata().equals(schema.remove_metadata()):
                raise InvalidArgument(f"{f} has a different schema from {files[0]}")
        check_registered_schema(schema, self.max_columns, item.path)
        ra, dec = sky_columns(schema, item.ra, item.dec)
        out = stage / name
        if ra:
            say(f"partitioning {path} into HATS ({ra}, {dec})")
            write_hats_catalog(files, schema, out, name, ra, dec,
                               partition_rows=self.partition_rows, max_order=self.max_order, progress=say)
            found = scan_hats_catalog(out, name)
            return [(found, out)]
        if item.adopt:
            (out / "dataset").mkdir(parents=True)
            moved = []
            for i, f in enumerate(files):
                target = out / "dataset" / f"part-{i:05d}.parquet"
                shutil.move(f, target)
                moved.append(target)
            files, root = moved, out
        else:
            root = path if path.is_dir() else path.parent
        parts = [parquet_partition(f, root) for f in files]
        found = Found(name=name, kind="table", root=root, partitions=parts, schema=schema)
        return [(found, out if item.adopt else None)]

    def ingest(self, items: list[IngestItem], progress: Callable[[str], None] | None = None) -> list[Dataset]:
        """Registers every item or none; returns the new datasets."""
        say = progress or (lambda msg: logger.info("%s", msg))
        if not items:
            raise InvalidArgument("nothing to ingest")
        stage = self.staging / uuid.uuid4().hex
        stage.mkdir(parents=True)
        placed: list[Path] = []
        try:
            prepared: list[tuple[Found, Path | None]] = []
            item_of: list[IngestItem] = []
            for item in items:
                found_here = self._prepare(item, stage, say)
                prepared.extend(found_here)
                item_of.extend([item] * len(found_here))
            names = [f.name for f, _ in prepared]
            for n in names:
                check_dataset_name(n)
                if names.count(n) > 1:
                    raise InvalidArgument(f"dataset {n!r} appears twice in one ingest")
                if self.store.has_dataset(n):
                    raise AlreadyExists(f"dataset {n!r} already exists")
            datasets = []
            for (found, staged), item in zip(prepared, item_of):
                if staged is not None:
                    final = self.dataset_dir(found.name)
                    if final.exists():
                        raise AlreadyExists(f"{final} already exists on disk")
                    final.parent.mkdir(parents=True, exist_ok=True)
                    staged.rename(final)
                    placed.append(final)
                    found.root = final
                datasets.append(_to_dataset(found, self.store.island, item))
            with self.store.transaction() as tx:
                for ds in datasets:
                    tx.put_dataset(ds)
            return datasets
        except BaseException:
            for folder in placed:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def delete(self, name: str) -> bool:
        """Removes a dataset this island authored: its records (a ``dataset.delete`` change that
        peers apply) and, when the island wrote them, its files. Returns whether files went."""
        ds = self.store.dataset(check_dataset_name(name), with_partitions=False)
        if ds.origin != self.store.island:
            raise FailedPrecondition(f"dataset {name!r} is held by island {ds.origin}; delete it there")
        with self.store.transaction() as tx:
            tx.delete_dataset(name)
        owned = Path(ds.root).resolve()
        if owned.parent == (self.data_dir / "datasets").resolve() and owned.name == name:
            shutil.rmtree(owned, ignore_errors=True)
            return True
        return False

    def append(self, name: str, batches, schema: pa.Schema | None = None) -> tuple[Dataset, list[Partition]]:
        """Adds rows to a dataset this island owns, as new partition files (no file readers use
        is rewritten); one catalog transaction that peers receive as a ``dataset.append``."""
        from island.storage.hats_append import conform, write_sky_append, write_table_append

        ds = self.store.dataset(check_dataset_name(name))
        if ds.origin != self.store.island:
            raise FailedPrecondition(f"dataset {name!r} is held by island {ds.origin}; append to it there")
        root = Path(ds.root).resolve()
        if not (root.parent == (self.data_dir / "datasets").resolve() and root.name == name):
            raise FailedPrecondition(f"dataset {name!r} is registered in place at {ds.root}, outside the island's "
                                     "data folder; only datasets the island wrote (publish, partitioned ingest) "
                                     "take appends")
        if ds.kind not in ("catalog", "object", "source", "table"):
            raise FailedPrecondition(f"dataset {name!r} is a {ds.kind}; appends go to catalogs and tables")
        if isinstance(batches, pa.Table):
            table = batches
        else:
            batches = list(batches)
            if not batches and schema is None:
                raise InvalidArgument("append received no rows")
            table = pa.Table.from_batches(batches, schema=schema)
        if table.num_rows == 0:
            raise InvalidArgument("append received no rows")
        table = conform(table, ds)
        token = uuid.uuid4().hex[:12]
        stage = self.staging / f"append-{token}"
        stage.mkdir(parents=True)
        placed: list[Path] = []
        try:
            files = write_sky_append(table, ds, stage, token) if ds.is_sky else write_table_append(table, stage, token)
            parts = []
            for rel, order, pixel in files:
                part = parquet_partition(stage / rel, stage, order, pixel)
                parts.append(part)
            for rel, _, _ in files:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / rel, root / rel)
                placed.append(root / rel)
            with self.store.transaction() as tx:
                updated = tx.append_partitions(name, parts)
        except BaseException:
            for f in placed:
                f.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return updated, parts

    def stage(self, batches, schema: pa.Schema) -> Path:
        """Writes streamed batches to a staged Parquet file, in the schema data is stored with
        (see ``island.storage.columns``), with no lock held: a slow or stalled sender blocks
        no one. Returns the file; the caller hands it to ``publish`` or ``append`` (which
        remove it) or removes its folder."""
        import pyarrow.parquet as pq

        stored = publishable_schema(schema, self.max_columns)
        folder = self.staging / f"publish-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        path = folder / "input.parquet"
        try:
            rows = 0
            with pq.ParquetWriter(path, stored) as writer:
                for batch in batches:
                    writer.write_batch(conform_batch(batch, stored))
                    rows += batch.num_rows
            if rows == 0:
                raise InvalidArgument("publish received no rows")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return path

    def publish(self, name: str, batches, schema: pa.Schema, ra: str = "", dec: str = "", owner: str = "",
                readers: tuple[str, ...] = ("public",), public_after: str = "", staged: Path | None = None) -> Dataset:
        """Ingests streamed batches (or the file ``stage`` made of them) as a new dataset."""
        check_dataset_name(name)
        if self.store.has_dataset(name):
            if staged is not None:
                shutil.rmtree(staged.parent, ignore_errors=True)
            raise AlreadyExists(f"dataset {name!r} already exists")
        path = staged if staged is not None else self.stage(batches, schema)
        try:
            return self.ingest([IngestItem(str(path), name, ra, dec, adopt=True, owner=owner, readers=readers,
                                           public_after=public_after)])[0]
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)
