"""The embedded queue's transport: a message is never visible to a consumer before it is
written whole (Kombu's own filesystem transport lets a consumer take it empty, and the
worker's consumer then dies on the JSON error)."""

from __future__ import annotations

import pytest
from kombu import Connection
from kombu.exceptions import ChannelError
from kombu.transport import filesystem

from replication import fsqueue


def _channel(tmp_path, transport: str, **options):
    (tmp_path / "processed").mkdir()
    conn = Connection(f"{transport}://", transport_options={
        "data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "store_processed": True,
        "processed_folder": str(tmp_path / "processed"), "control_folder": str(tmp_path / "control"), **options})
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


# Kombu keeps the queues a process declared in a state shared by its connections (and their
# bindings in the control folder of the first): each test below uses a queue name of its own.
def _listings(monkeypatch) -> list[int]:
    """Counts the consumer's listings of the queue folder."""
    count = [0]
    real = fsqueue.os.listdir

    def listdir(path):
        count[0] += 1
        return real(path)

    monkeypatch.setattr(fsqueue.os, "listdir", listdir)
    return count


def test_an_idle_consumer_waits_for_the_folder_to_change_instead_of_polling_it(tmp_path, monkeypatch):
    import threading

    conn, _ = _channel(tmp_path, fsqueue.SCHEME, polling_interval=0.005)
    try:
        queue = conn.SimpleQueue("idle")
        listings = _listings(monkeypatch)
        with pytest.raises(Exception) as empty:  # nothing for 0.5 s: a handful of listings, not 100
            queue.get(timeout=0.5)
        assert type(empty.value).__name__ == "Empty"
        assert listings[0] <= 4, listings
        assert isinstance(conn.transport._watch, fsqueue.FolderWatch)

        # a message sent by another connection (the island) while the consumer waits wakes it
        sender = Connection(f"{fsqueue.SCHEME}://", transport_options=dict(conn.transport_options))
        timer = threading.Timer(0.3, lambda: sender.SimpleQueue("idle").put({"job": 1}))
        timer.start()
        listings[0] = 0
        message = queue.get(timeout=60)
        timer.join()
        assert message.payload == {"job": 1}
        message.ack()
        assert listings[0] <= 4, listings
        sender.release()
    finally:
        conn.release()


def test_without_inotify_the_consumer_polls_as_kombu_does(tmp_path, monkeypatch):
    def unavailable(folder):
        raise OSError(38, "inotify_init1 failed")

    monkeypatch.setattr(fsqueue, "FolderWatch", unavailable)
    conn, _ = _channel(tmp_path, fsqueue.SCHEME, polling_interval=0.005)
    try:
        queue = conn.SimpleQueue("polled")
        queue.put({"job": 2})
        message = queue.get(timeout=10)
        assert message.payload == {"job": 2}
        message.ack()
        listings = _listings(monkeypatch)
        with pytest.raises(Exception):
            queue.get(timeout=0.3)
        assert listings[0] > 10 and conn.transport._watch is False
    finally:
        conn.release()
