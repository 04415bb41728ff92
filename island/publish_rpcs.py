"""Writes of data products: ingest from the island's disk, publish and append over the wire,
delete."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator

import pyarrow.parquet as pq

from archipel.arrowwire import MessageTooLarge, RawChunk, decode_chunks, dense_schema, read_schema, to_dense
from archipel.errors import ArchipelError, DeadlineExceeded, InvalidArgument, PermissionDenied, ResourceExhausted
from archipel.names import check_dataset_name
from archipel.v1 import island_pb2 as pb
from island.convert import dataset_to_pb
from island.ingest import IngestItem
from island.rpc import Call, rpc
from island.storage.columns import publishable_schema
from metacatalog import access


class PublishRpcs:
    """Mixed into ``IslandServicer`` (its ``cfg``, ``store``, ``archipelago``, ... ); methods
    translate messages and call the island's parts."""

    def _exports_changed(self) -> None:
        """A dataset of this island's appeared or went: served over HTTP and XRootD at once."""
        if self.replication is not None:
            self.replication.resync_exports()

    @rpc
    def Ingest(self, request, context, call: Call):
        access.check_admin(call.caller, "ingesting files from the island's disk")
        items = [IngestItem(i.path, i.dataset, i.ra_column, i.dec_column, owner=call.caller.user or "admin",
                            **self._access_of(i)) for i in request.items]
        call.datasets.extend(i.dataset for i in items)
        with self._ingest_lock:
            datasets = self.ingester.ingest(items)
        self._exports_changed()
        return pb.IngestResponse(datasets=[dataset_to_pb(d, self.cfg.island.name) for d in datasets])

    @rpc
    def DeleteDataset(self, request, context, call: Call):
        name = check_dataset_name(request.name)
        ds = self.store.dataset(name, with_partitions=False)
        call.datasets.append(name)
        access.check_owner(call.caller, name, ds.access, "delete")
        with self._ingest_lock:
            removed = self.ingester.delete(name)
        self._exports_changed()
        return pb.DeleteDatasetResponse(deleted=True, files_removed=removed)

    @rpc
    def Publish(self, request_iterator, context, call: Call):
        it = iter(request_iterator)
        first = next(it, None)
        if first is None or isinstance(first, RawChunk) or first.WhichOneof("part") != "header":
            raise InvalidArgument("publish must start with a header naming the dataset")
        header = first.header
        if header.mode not in ("", "create", "append"):
            raise InvalidArgument(f"publish mode must be 'create' or 'append', not {header.mode!r}")
        name = check_dataset_name(header.dataset)
        call.datasets.append(name)
        if call.caller.anonymous:
            raise PermissionDenied("publishing needs a token: anonymous callers only read")
        if header.mode == "append":
            access.check_owner(call.caller, name, self.store.dataset(name, with_partitions=False).access, "append to")
        given = self._access_of(header)
        second = next(it, None)
        if second is None or isinstance(second, RawChunk) or second.WhichOneof("part") != "arrow_schema":
            raise InvalidArgument("publish must send the Arrow schema after the header")
        try:
            schema = dense_schema(read_schema(second.arrow_schema))
        except Exception as exc:
            raise InvalidArgument(f"publish: malformed Arrow schema: {exc}") from None
        limits = self.cfg.limits
        publishable_schema(schema, limits.max_columns)  # refused before any data is read

        started = time.monotonic()
        received = 0

        def chunks() -> Iterator[tuple[bytes, bool]]:
            nonlocal received
            for msg in it:
                if isinstance(msg, RawChunk):
                    body, more = msg.body, msg.more
                elif msg.WhichOneof("part") == "chunk":
                    body, more = msg.chunk.body, msg.chunk.more
                else:
                    raise InvalidArgument("publish: expected only Arrow chunks after the schema")
                received += len(body)
                if limits.publish_bytes and received > limits.publish_bytes:
                    raise ResourceExhausted(f"publish sent more than {limits.publish_bytes} bytes of Arrow data "
                                            f"([limits] publish_bytes)")
                if limits.publish_seconds and time.monotonic() - started > limits.publish_seconds:
                    raise DeadlineExceeded(f"publish stream open for more than {limits.publish_seconds:g} s "
                                           f"([limits] publish_seconds)")
                yield body, more

        def batches():
            try:
                for batch in decode_chunks(chunks(), schema, limits.publish_message_bytes):
                    yield to_dense(batch, schema)
            except MessageTooLarge as exc:
                raise ResourceExhausted(f"publish: {exc} ([limits] publish_message_bytes)") from None
            except ArchipelError:
                raise
            except Exception as exc:
                raise InvalidArgument(f"publish: malformed Arrow data: {exc}") from None

        # A sender that stops sending is cut when its time is up (its stream is cancelled);
        # the data is staged with no lock held, so an open publish blocks no other writer.
        timer = threading.Timer(limits.publish_seconds, context.cancel) if limits.publish_seconds else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            staged = self.ingester.stage(batches(), schema)
        finally:
            if timer is not None:
                timer.cancel()
        try:
            with self._ingest_lock:
                if header.mode == "append":
                    ds, _ = self.ingester.append(name, pq.read_table(staged))
                else:
                    ds = self.ingester.publish(name, None, schema, header.ra_column, header.dec_column,
                                               owner=call.caller.user, staged=staged, **given)
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)
        self._exports_changed()
        return pb.PublishResponse(dataset=dataset_to_pb(ds, self.cfg.island.name))

    @staticmethod
    def _access_of(msg) -> dict:
        """readers and public_after of a publish header or an ingest item, checked."""
        readers = access.parse_readers(list(msg.readers)) if msg.readers_given else ("public",)
        return {"readers": readers, "public_after": access.parse_public_after(msg.public_after)}
