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
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

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


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
