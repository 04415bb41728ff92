"""Spark sessions from the client: a ``pyspark.sql.SparkSession`` (Spark Connect, no JVM here)
whose calls go to the island connected to, over its TLS port with the caller's token; the
island relays them to the island the session runs on. Needs ``pip install 'archipel[spark]'``
(``pyspark-client``)."""

from __future__ import annotations

from typing import Any

import grpc

from archipel.errors import FailedPrecondition

__all__ = ["open_session", "ISLAND_HEADER"]

ISLAND_HEADER = "x-archipel-island"


def _builder_class():
    try:
        from pyspark.sql.connect.client import ChannelBuilder
    except ImportError as exc:
        raise FailedPrecondition("Spark sessions need the Spark Connect client: pip install 'archipel[spark]' "
                                 f"(pyspark-client; no Java needed) ({exc})") from None

    class ArchipelChannelBuilder(ChannelBuilder):
        """Spark Connect's channel to an island: the archipelago's CA, the caller's token, and
        the island the session runs on."""

        def __init__(self, address: str, credentials: grpc.ChannelCredentials, session_id: str, island: str,
                     user: str) -> None:
            super().__init__(params={ChannelBuilder.PARAM_SESSION_ID: session_id,
                                     ChannelBuilder.PARAM_USER_ID: user, ISLAND_HEADER: island})
            from archipel.channel import CHANNEL_OPTIONS

            for key, value in CHANNEL_OPTIONS:
                self.setChannelOption(key, value)
            self._address = address
            self._credentials = credentials

        @property
        def host(self) -> str:
            return self._address

        def toChannel(self) -> grpc.Channel:
            return self._secure_channel(self._address, self._credentials)

    return ArchipelChannelBuilder


def open_session(address: str, credentials: grpc.ChannelCredentials, info: Any) -> Any:
    """A SparkSession on the session ``info`` (a SessionInfo the island opened)."""
    builder = _builder_class()(address, credentials, info.id, info.island, info.user)
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.channelBuilder(builder).create()
    spark.archipel = {"id": info.id, "island": info.island, "user": info.user, "reason": info.reason}
    return spark


def message_dict(msg: Any) -> dict[str, Any]:
    """A SessionInfo, CachedTable or JobInfo as a plain dict (every field, defaults included)."""
    out: dict[str, Any] = {}
    for fd in msg.DESCRIPTOR.fields:
        value = getattr(msg, fd.name)
        out[fd.name] = list(value) if fd.is_repeated else value
    return out


class Job:
    """A batch job: ``id``, ``state`` (queued, running, succeeded, failed, cancelled), its output
    with ``logs()``, ``wait()`` for its end."""

    FINISHED = ("succeeded", "failed", "cancelled")

    def __init__(self, client: Any, info: Any) -> None:
        self._client = client
        self._set(info)

    def _set(self, info: Any) -> None:
        self.info = message_dict(info)
        self.id: str = info.id
        self.island: str = info.island
        self.state: str = info.state
        self.reason: str = info.reason
        self.exit_code: int = info.exit_code
        self.published: list[str] = list(info.published)

    def refresh(self) -> "Job":
        self._set(self._client._job_call("GetJob", self.id, self.island))
        return self

    def logs(self, follow: bool = False, offset: int = 0):
        """The job's output as bytes chunks; with ``follow``, until the job ends (then its
        final state is kept on this object)."""
        for chunk in self._client._job_logs(self.id, self.island, follow, offset):
            if chunk.data:
                yield chunk.data
            if chunk.HasField("job"):
                self._set(chunk.job)

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> "Job":
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.refresh().state not in self.FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                from archipel.errors import DeadlineExceeded

                raise DeadlineExceeded(f"job {self.id} is still {self.state} after {timeout:g} s")
            time.sleep(poll)
        return self

    def cancel(self) -> "Job":
        self._set(self._client._job_call("CancelJob", self.id, self.island))
        return self

    def __repr__(self) -> str:
        return f"<archipel.Job {self.id} {self.state} on {self.island}>"
