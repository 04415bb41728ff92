"""Catalog sync, the pure part: what a follower does with one change from a peer.

Every record has exactly one authoring island: a dataset (and its partitions) is written only
by its origin. Each origin numbers its changes 1, 2, 3, ...; a follower applies an origin's
change only if it is the next one after its cursor, so a change is never applied twice (a
duplicate is dropped) and never skipped (a gap is refused and asked for again from the cursor).
Changes of every origin travel over every link, so a sparse topology relays them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from archipel.errors import InvalidArgument
from archipel.names import check_dataset_name, check_partition_path
from metacatalog.model import Change, Dataset, Partition

__all__ = ["Decision", "decide", "dataset_from_payload", "change_from_wire", "OPS"]

OPS = ("dataset.put", "dataset.delete", "dataset.append", "dataset.access", "replica.put", "replica.delete",
       "island.put", "token.put", "token.revoke")


@dataclass(frozen=True)
class Decision:
    action: str  # "apply", "duplicate", "gap", "own"
    reason: str = ""


def decide(island: str, cursor: int, change: Change) -> Decision:
    """What to do with ``change`` when this island (``island``) has applied its origin's
    changes up to ``cursor``."""
    if change.origin == island:
        return Decision("own", "an island's own log is authoritative")
    if change.seq <= cursor:
        return Decision("duplicate", f"seq {change.seq} <= cursor {cursor}")
    if change.seq != cursor + 1:
        return Decision("gap", f"expected seq {cursor + 1} of {change.origin}, got {change.seq}")
    return Decision("apply")


def _partition(d: dict[str, Any]) -> Partition:
    return Partition(path=check_partition_path(d["path"]), num_rows=int(d["num_rows"]), num_bytes=int(d["num_bytes"]),
                     adler32=int(d["adler32"]), order=d.get("order"), pixel=d.get("pixel"),
                     stats=dict(d.get("stats") or {}))


def _access(payload: dict[str, Any]) -> dict[str, Any]:
    """A record's access facts, checked (a malformed one is refused with its change)."""
    from metacatalog.access import parse_public_after, parse_readers

    owner = str(payload.get("owner", ""))
    if len(owner) > 64:
        raise ValueError("owner name too long")
    return {"owner": owner, "readers": parse_readers(list(payload.get("readers", ["public"]))),
            "public_after": parse_public_after(payload.get("public_after", ""))}


def dataset_from_payload(payload: dict[str, Any], origin: str) -> Dataset:
    """The dataset a ``dataset.put`` change carries; refuses one not authored by ``origin``."""
    try:
        if payload["origin"] != origin:
            raise InvalidArgument(f"dataset {payload.get('name')!r} is authored by {payload['origin']!r}, "
                                  f"but came in a change of {origin!r}")
        return Dataset(
            name=check_dataset_name(payload["name"]), origin=origin, kind=str(payload["kind"]),
            root=str(payload["root"]), arrow_schema=bytes.fromhex(payload["arrow_schema"]),
            num_rows=int(payload["num_rows"]), num_bytes=int(payload["num_bytes"]),
            ra_column=str(payload.get("ra_column", "")), dec_column=str(payload.get("dec_column", "")),
            hats_properties={str(k): str(v) for k, v in (payload.get("hats_properties") or {}).items()},
            moc=str(payload.get("moc", "")), sky_fraction=float(payload.get("sky_fraction", 0.0)),
            created=str(payload.get("created", "")),
            partitions=tuple(_partition(p) for p in payload.get("partitions", [])),
            **_access(payload),
        )
    except InvalidArgument as exc:
        raise InvalidArgument(f"dataset in a change of {origin!r} refused: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(f"malformed dataset in a change of {origin!r}: {exc!r}") from None


def change_from_wire(origin: str, seq: int, op: str, key: str, payload_json: str, ts: float,
                     signature: bytes = b"") -> Change:
    """A change received from a peer, checked for shape; raises InvalidArgument."""
    if op not in OPS:
        raise InvalidArgument(f"unknown change op {op!r} from {origin!r}")
    if seq < 1:
        raise InvalidArgument(f"change of {origin!r} has sequence {seq}")
    try:
        payload = json.loads(payload_json or "{}")
    except ValueError as exc:
        raise InvalidArgument(f"change {origin}:{seq} has malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidArgument(f"change {origin}:{seq} payload is not an object")
    if op == "island.put":
        if key != origin:
            raise InvalidArgument(f"change {origin}:{seq} announces the data URLs of {key!r}, not its own")
        for k in ("http", "root"):
            url = payload.get(k, "")
            if not isinstance(url, str) or (url and not url.startswith(("http://", "https://", "root://"))) or len(url) > 300:
                raise InvalidArgument(f"change {origin}:{seq} has a malformed {k} URL {url!r}")
        return Change(origin=origin, seq=seq, op=op, key=key, payload=payload, ts=ts, signature=signature,
                      payload_json=payload_json)
    if op.startswith("token."):
        if not key or len(key) > 64 or not key.isalnum():
            raise InvalidArgument(f"change {origin}:{seq} names a malformed token id {key!r}")
        if op == "token.put":
            if str(payload.get("id")) != key or str(payload.get("issuer")) != origin:
                raise InvalidArgument(f"change {origin}:{seq} records a token it did not issue")
        return Change(origin=origin, seq=seq, op=op, key=key, payload=payload, ts=ts, signature=signature,
                      payload_json=payload_json)
    check_dataset_name(key)
    if op == "dataset.access":
        try:
            payload = {**payload, **_access(payload)}
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"change {origin}:{seq} has malformed access facts: {exc}") from None
    if op.startswith("replica."):
        pids = payload.get("pids")
        if not isinstance(pids, list) or not pids:
            raise InvalidArgument(f"change {origin}:{seq} has malformed replica pids")
        for pid in pids:
            try:
                check_partition_path(pid)
            except InvalidArgument as exc:
                raise InvalidArgument(f"change {origin}:{seq} names a hostile replica: {exc}") from None
    if op == "dataset.append":
        try:
            parts = [_partition(p) for p in payload["partitions"]]
            int(payload["num_rows"]), int(payload["num_bytes"]), float(payload.get("sky_fraction", 0.0))
        except (KeyError, TypeError, ValueError, InvalidArgument) as exc:
            raise InvalidArgument(f"change {origin}:{seq} is a malformed append: {exc}") from None
        if not parts:
            raise InvalidArgument(f"change {origin}:{seq} appends no partition")
        payload = {**payload, "parsed_partitions": parts}
    if op == "dataset.put":
        ds = dataset_from_payload(payload, origin)
        if ds.name != key:
            raise InvalidArgument(f"change {origin}:{seq} names {key!r} but carries {ds.name!r}")
    return Change(origin=origin, seq=seq, op=op, key=key, payload=payload, ts=ts, signature=signature,
                  payload_json=payload_json)
