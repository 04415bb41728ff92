"""The embedded queue's transport: Kombu's filesystem transport, with messages written whole
before they can be taken.

Kombu's own ``_put`` creates the message file under its final name and then writes it; a worker
listing the folder in between takes it empty, fails to parse it, and its consumer dies
(``Unrecoverable error: JSONDecodeError``), so the island restarts the worker and sends every
unfinished job again. Seen in a rule of 64 files with the queue polled every 5 ms. Here a
message is written under a name the consumer ignores (it takes only ``*.<queue>.msg``) and
renamed into place, which is atomic within the folder.

A message taken is renamed into the ``processed`` folder (so two consumers never take the same
one) and deleted once read: Kombu keeps them there for ever. The durable state of every job is
the catalog's ``transfers`` row, which a restart sends again, not this file.

A consumer with nothing to take waits for the folder to change (Linux's inotify) instead of
listing it every ``polling_interval``: the 5 ms listing took 3-4 % of a core in every idle
worker of every island. Where inotify is missing, and while the worker holds all the messages
it may (its prefetch), it lists the folder every ``polling_interval`` as Kombu does.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import uuid
from time import monotonic, sleep

from queue import Empty

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

__all__ = ["Transport", "SCHEME"]

SCHEME = "archipelfs"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.writing")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


    def _get(self, queue):
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except OSError:  # taken by another consumer meanwhile
                continue
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
                os.unlink(taken)
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class FolderWatch:
    """Wakes a waiting consumer when a message is renamed into (or written in) a folder."""

    IN_CLOSE_WRITE, IN_MOVED_TO = 0x08, 0x80

    def __init__(self, folder: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(self.fd, os.fsencode(folder), self.IN_CLOSE_WRITE | self.IN_MOVED_TO) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"cannot watch {folder}")

    def wait(self, seconds: float) -> None:
        """Until the folder changed since the last wait (at once if it did), ``seconds`` at most."""
        if select.select([self.fd], [], [], max(0.0, seconds))[0]:
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        os.close(self.fd)


class Transport(filesystem.Transport):
    Channel = Channel
    _watch: FolderWatch | None | bool = None  # False: inotify unavailable, poll

    def _folder_watch(self) -> FolderWatch | None:
        if self._watch is None:
            try:
                self._watch = FolderWatch(self.client.transport_options["data_folder_in"])
            except (OSError, AttributeError, KeyError):
                self._watch = False
        return self._watch or None

    def drain_events(self, connection, timeout=None):
        watch = self._folder_watch()
        if watch is None:
            return super().drain_events(connection, timeout)
        started = monotonic()
        while True:
            try:
                return self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                left = 1.0 if timeout is None else timeout - (monotonic() - started)
                if left <= 0:
                    raise socket.timeout() from None
                if all(ch.qos.can_consume() for ch in self.channels):
                    # The watch started before the folder was first listed, so a message
                    # renamed in since then has woken it already: nothing is missed.
                    watch.wait(min(left, 1.0))
                else:  # a message may be taken once a running one is acknowledged
                    sleep(min(left, self.polling_interval or 0.005))

    def close_connection(self, connection):
        if self._watch:
            self._watch.close()
            self._watch = None
        return super().close_connection(connection)


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
