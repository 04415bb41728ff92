"""Short-circuit local reads: the island's descriptor socket (``island.shortcircuit``) and the
client's side (``archipel.direct.local_descriptors``), on real abstract Unix sockets."""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import threading
import time

import pytest

from archipel.direct import local_descriptors
from archipel.errors import PermissionDenied
from archipel.v1 import island_pb2 as pb
from island.shortcircuit import MAX_FILES, ShortCircuit, proof


@pytest.fixture
def files(tmp_path):
    out = []
    for i in range(3):
        p = tmp_path / f"part-{i}.parquet"
        p.write_bytes(bytes([i]) * (1000 + i))
        out.append(p)
    return out


@pytest.fixture
def island():
    sc = ShortCircuit("unit")
    sc.start()
    yield sc
    sc.stop()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _contents(fds: dict[int, int]) -> dict[int, bytes]:
    return {i: os.pread(fd, 1 << 20, 0) for i, fd in fds.items()}


def _close(fds: dict[int, int]) -> None:
    for fd in fds.values():
        os.close(fd)


def test_the_files_granted_come_back_as_descriptors(island, files):
    local = island.grant([str(p) for p in files], [p.stat().st_size for p in files], "alice")
    fds = local_descriptors(local, [p.stat().st_size for p in files])
    try:
        assert _contents(fds) == {i: p.read_bytes() for i, p in enumerate(files)}
    finally:
        _close(fds)
    assert island.files_handed == 3


def test_more_files_than_one_answer_holds_are_asked_in_batches(island, tmp_path):
    paths = []
    for i in range(MAX_FILES + 7):
        p = tmp_path / f"f{i}"
        p.write_bytes(str(i).encode())
        paths.append(p)
    sizes = [p.stat().st_size for p in paths]
    fds = local_descriptors(island.grant([str(p) for p in paths], sizes, "alice"), sizes)
    try:
        assert len(fds) == len(paths) and os.pread(fds[MAX_FILES + 3], 10, 0) == str(MAX_FILES + 3).encode()
    finally:
        _close(fds)


def test_refusals_hand_out_nothing_and_leak_no_descriptor(files):
    sizes = [p.stat().st_size for p in files]
    paths = [str(p) for p in files]
    revoked = threading.Event()

    def recheck() -> None:
        if revoked.is_set():
            raise PermissionDenied("the token was revoked")

    sc = ShortCircuit("unit", grant_seconds=0.3)
    sc.start()
    try:
        before = _open_fds()
        local = sc.grant(paths, sizes, "alice", recheck)
        revoked.set()
        assert local_descriptors(local, sizes) == {}  # the caller may not read any more
        revoked.clear()
        assert local_descriptors(local, [*sizes[:2], sizes[2] + 1]) == {}  # not the size the client was told
        files[1].write_bytes(b"rewritten")  # changed since the plan
        assert local_descriptors(local, sizes) == {}
        files[1].unlink()  # gone since the plan (an evicted replica)
        assert local_descriptors(local, sizes) == {}
        time.sleep(0.4)
        local2 = sc.grant(paths[:1], sizes[:1], "alice")
        assert local_descriptors(local, sizes) == {}  # expired
        fds = local_descriptors(local2, sizes[:1])
        assert len(fds) == 1
        _close(fds)
        assert sc.refused == 4  # the size the client was told is checked by the client
        # the island's side (in this process here) closes its end of each connection after the client
        deadline = time.monotonic() + 10
        while _open_fds() != before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _open_fds() == before
    finally:
        sc.stop()


def _fake_island(name: str, answer: dict | None, fd_of: str | None) -> threading.Thread:
    """A process that took a socket name: answers every request with ``answer`` and a
    descriptor of ``fd_of`` (or stays silent with ``answer`` None)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + name)
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        if answer is not None:
            body = json.dumps(answer).encode()
            fds = [os.open(fd_of, os.O_RDONLY)] if fd_of else []
            socket.send_fds(conn, [struct.pack(">I", len(body)) + body], fds)
            for fd in fds:
                os.close(fd)
        time.sleep(0.8)
        conn.close()
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_squatter_without_the_key_is_not_believed(files):
    """Something else bound the socket's name (on another host, where the island's answer was
    read): its descriptors are closed unused, and the reader goes over the network."""
    size = files[0].stat().st_size
    name = f"archipel-test/{secrets.token_hex(8)}"
    local = pb.LocalRead(socket=name, grant=secrets.token_bytes(16), key=secrets.token_bytes(32))
    before = _open_fds()
    t = _fake_island(name, {"proof": proof(b"another key", b"x" * 32), "sizes": [size]}, str(files[0]))
    assert local_descriptors(local, [size]) == {}
    t.join()
    assert _open_fds() == before
    # one that never answers: given up after the timeout
    name2 = f"archipel-test/{secrets.token_hex(8)}"
    t = _fake_island(name2, None, None)
    assert local_descriptors(pb.LocalRead(socket=name2, grant=b"g" * 16, key=b"k" * 32), [size], timeout=0.5) == {}
    t.join()


def test_an_island_on_another_host_is_simply_not_reachable(files):
    local = pb.LocalRead(socket=f"archipel-test/{secrets.token_hex(8)}", grant=b"g" * 16, key=b"k" * 32)
    assert local_descriptors(local, [10]) == {}
    assert local_descriptors(pb.LocalRead(), [10]) == {}


def _ask(name: str, data: bytes) -> tuple[dict | None, list[int]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect("\0" + name)
    try:
        s.sendall(data)
        head, fds, _, _ = socket.recv_fds(s, 4, 10)
        if not head:
            return None, fds
        (n,) = struct.unpack(">I", head)
        body = b""
        while len(body) < n:
            body += s.recv(n - len(body))
        return json.loads(body), fds
    finally:
        s.close()


def test_hostile_requests_get_an_error_and_the_socket_keeps_serving(island, files):
    sizes = [p.stat().st_size for p in files]
    local = island.grant([str(p) for p in files], sizes, "alice")
    good = {"grant": local.grant.hex(), "nonce": "ab" * 16, "files": [0]}
    bad = [
        b"not json\n",
        b"[1, 2]\n",
        json.dumps({**good, "grant": "zz"}).encode() + b"\n",
        json.dumps({**good, "grant": "00" * 16}).encode() + b"\n",
        json.dumps({**good, "nonce": "ab"}).encode() + b"\n",
        json.dumps({**good, "files": [3]}).encode() + b"\n",
        json.dumps({**good, "files": [-1]}).encode() + b"\n",
        json.dumps({**good, "files": [True]}).encode() + b"\n",
        json.dumps({**good, "files": ["0"]}).encode() + b"\n",
        json.dumps({**good, "files": []}).encode() + b"\n",
        json.dumps({**good, "files": [0] * (MAX_FILES + 1)}).encode() + b"\n",
        b"x" * (70 * 1024),
    ]
    for data in bad:
        answer, fds = _ask(island.socket_name, data)
        assert fds == [] and answer is not None and answer["error"], data[:60]
    # more connections than it serves at once: the extra ones are closed, it serves again after
    held = []
    for _ in range(70):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\0" + island.socket_name)
        held.append(s)
    time.sleep(0.3)
    for s in held:
        s.close()
    deadline = time.monotonic() + 10
    while True:
        answer, fds = _ask(island.socket_name, json.dumps(good).encode() + b"\n")
        if fds or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(fds) == 1 and answer["proof"] == proof(local.key, bytes.fromhex("ab" * 16))
    os.close(fds[0])


def test_stopping_wakes_connections_left_open(files):
    """Connections are served by a pool of reused threads (one catalog connection each, not
    one per read); stopping the socket ends the idle ones instead of waiting out their timeout."""
    sc = ShortCircuit("unit", idle_seconds=3600)
    sc.start()
    local = sc.grant([str(p) for p in files], [p.stat().st_size for p in files], "alice")
    fds = local_descriptors(local, [p.stat().st_size for p in files])  # one served, its thread kept
    _close(fds)
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    for s in idle:
        s.connect("\0" + sc.socket_name)
    deadline = time.monotonic() + 10
    while len(sc._open) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sc._open) == 3  # served, silent
    stopper = threading.Thread(target=sc.stop)
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive() and not sc._open
    for s in idle:
        s.settimeout(5)
        assert s.recv(10) == b""  # closed by the island
        s.close()
