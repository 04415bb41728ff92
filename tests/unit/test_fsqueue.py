"""The embedded queue's transport: a message is never visible to a consumer before it is
written whole (Kombu's own filesystem transport lets a consumer take it empty, and the
worker's consumer then dies on the JSON error)."""

from __future__ import annotations

import pytest
from kombu import Connection
from kombu.exceptions import ChannelError
from kombu.transport import filesystem

from replication import fsqueue


def _channel(tmp_path, transport: str):
    (tmp_path / "processed").mkdir()
    conn = Connection(f"{transport}://", transport_options={
        "data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "store_processed": True,
        "processed_folder": str(tmp_path / "processed"), "control_folder": str(tmp_path / "control")})
    return conn, conn.default_channel


def _take_while_writing(monkeypatch, module, channel) -> list:
    """Writes one message; while it is being written, a consumer takes what it can see."""
    seen: list = []
    real = module.str_to_bytes

    def writing(text):
        try:
            seen.append(channel._get("q"))
        except Exception as exc:  # noqa: BLE001 - what the consumer would have met
            seen.append(exc)
        return real(text)

    monkeypatch.setattr(module, "str_to_bytes", writing)
    channel._put("q", {"body": "job"})
    monkeypatch.setattr(module, "str_to_bytes", real)
    return seen


def test_kombus_own_transport_shows_a_message_before_it_is_written(tmp_path, monkeypatch):
    conn, channel = _channel(tmp_path, "filesystem")
    try:
        seen = _take_while_writing(monkeypatch, filesystem, channel)
        assert len(seen) == 1 and isinstance(seen[0], ValueError)  # the JSON error that killed workers
    finally:
        conn.release()


def test_a_message_is_visible_only_whole(tmp_path, monkeypatch):
    conn, channel = _channel(tmp_path, fsqueue.SCHEME)
    try:
        seen = _take_while_writing(monkeypatch, fsqueue, channel)
        assert len(seen) == 1 and type(seen[0]).__name__ == "Empty"  # nothing to take yet
        assert channel._get("q") == {"body": "job"}  # then the whole message, once
        with pytest.raises(Exception, match="") as empty:
            channel._get("q")
        assert type(empty.value).__name__ == "Empty"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]  # nothing left behind
        assert list((tmp_path / "processed").iterdir()) == []
    finally:
        conn.release()


def test_a_message_that_cannot_be_placed_leaves_nothing(tmp_path, monkeypatch):
    conn, channel = _channel(tmp_path, fsqueue.SCHEME)

    def full(*_):
        raise OSError(28, "No space left on device")

    try:
        monkeypatch.setattr(fsqueue.os, "replace", full)
        with pytest.raises(ChannelError, match="Cannot add file"):
            channel._put("q", {"body": "job"})
    finally:
        conn.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]
