"""A fake peer for the integration tests: an island of the archipelago (its certificate is
valid) served from the test's own process, that speaks another protocol version or sends the
catalog changes a test gives it, as a buggy or compromised island would."""

from __future__ import annotations

import time
from concurrent import futures
from pathlib import Path

import grpc

from archipel.v1 import peer_pb2 as ppb
from archipel.v1 import peer_pb2_grpc as ppb_grpc
from islands import archipelago, free_port
from metacatalog.model import Change

__all__ = ["FakePeer", "serve_fake"]


class FakePeer:
    """Sends ``changes`` on every WatchCatalog stream (whatever the follower's cursors), signed
    with its own key unless ``sign`` is false, then ends the stream after ``hold`` seconds (the
    follower reconnects; a test may change ``changes`` meanwhile)."""

    def __init__(self, version: int, changes: list[ppb.CatalogChange], name: str = "evil",
                 ca_dir: Path | None = None, sign: bool = True, hold: float = 1.0) -> None:
        self.version, self.changes, self.name, self.sign = version, changes, name, sign
        self.ca_dir = ca_dir
        self.hold = hold
        self.address = ""
        self.creds = None

    def Hello(self, request, context):
        return ppb.HelloResponse(island=self.name, address=self.address, protocol_version=self.version, sequence=1)

    def WatchCatalog(self, request, context):
        for change in list(self.changes):
            if self.sign:
                signed = Change(change.origin, change.seq, change.op, change.key, {}, change.ts, b"",
                                change.payload_json).signed_bytes()
                change.signature = self.creds.sign(signed)
                change.origin_cert = self.creds.cert_der
            yield change
        time.sleep(self.hold)


def serve_fake(fake: FakePeer, tmp_path: Path) -> grpc.Server:
    """Starts ``fake`` on a free port of 127.0.0.1 with a certificate of the test archipelago
    (or of ``fake.ca_dir``); the caller stops the returned server."""
    from federation.pki import issue_island, load_credentials

    folder = tmp_path / f"fake-{fake.name}-{free_port()}"
    issue_island(fake.ca_dir or archipelago().ca_dir, folder, fake.name, "127.0.0.1")
    fake.creds = load_credentials(folder, fake.name)
    fake.address = f"127.0.0.1:{free_port()}"
    server = grpc.server(futures.ThreadPoolExecutor(4))
    ppb_grpc.add_PeerServicer_to_server(fake, server)
    creds = grpc.ssl_server_credentials([(fake.creds.key_pem, fake.creds.cert_pem)], fake.creds.ca_pem,
                                        require_client_auth=True)
    server.add_secure_port(fake.address, creds)
    server.start()
    return server
