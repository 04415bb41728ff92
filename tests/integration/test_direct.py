"""Direct reads against real islands: the client fetches the partition files an island names
from the islands' data ports and decodes them itself. The rows are the stream's (scans,
cones, limits, routed reads; joins and aggregates keep streaming), rights are checked again
by the island serving each file, limits hold, a read can be cancelled, and the data port
survives hostile input."""

from __future__ import annotations

import functools
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request

import pyarrow as pa
import pytest

import archipel
from archipel.errors import Unauthenticated
from islands import IslandProcess, wait_for
from tables import assert_same_answer

NO_SPARK = "[spark]\nstart = false\n"

SAME_ROWS = [
    ("SELECT * FROM test.allsky", "direct"),
    ("SELECT id, ra AS alpha, band FROM test.allsky", "direct"),
    ("SELECT id, mag FROM test.allsky WHERE cone(ra, dec, 315.0, -60.0, 10.0)", "direct"),
    ("SELECT * FROM test.allsky WHERE cone(ra, dec, 0.0, 90.0, 2.0)", "direct"),
    ("SELECT id FROM test.allsky WHERE cone(ra, dec, 359.95, 10.0, 0.8)", "direct"),
    ("SELECT id FROM test.allsky WHERE cone(ra, dec, 0.1, 10.0, 1.0) AND cone(ra, dec, 0.6, 10.0, 1.0)", "direct"),
    ("SELECT id FROM test.allsky WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 200.0, -89.7, 0.5)) = 1",
     "direct"),
    ("SELECT id FROM test.allsky WHERE cone(ra, dec, 45.0, 0.0, 0.0)", "direct"),
    ("SELECT * FROM sky.order1", "direct"),
    ("SELECT source_id, mag FROM sky.source WHERE cone(source_ra, source_dec, 320, -50, 3)", "direct"),
    ("SELECT * FROM sky.order1_margin_10arcs", "direct"),
    ("SELECT id, mag FROM test.allsky WHERE cone(ra, dec, 300.0, -45.0, 25.0) AND mag < 17", "stream"),
    ("SELECT band, count(*) AS n FROM test.allsky GROUP BY band", "stream"),
    ("SELECT a.id, b.source_id FROM sky.order1 a JOIN sky.source b ON a.id = b.object_id", "stream"),
]


@pytest.mark.parametrize("via", ["local", "network"])
@pytest.mark.parametrize("query,path", SAME_ROWS, ids=[f"{i}" for i in range(len(SAME_ROWS))])
def test_direct_and_stream_give_the_same_rows(client, query, path, via):
    """Both ways of a direct read (the files' descriptors from the island on this host, or the
    files over HTTPS from its data port) give the stream's rows."""
    direct = client.sql(query, local_reads=via == "local")
    streamed = client.sql(query, direct=False)
    d, s = direct.read_all(), streamed.read_all()
    assert direct.path == path and streamed.path == "stream"
    assert d.schema.equals(s.schema), (d.schema, s.schema)
    assert_same_answer(d, s)
    assert direct.stats.num_rows == d.num_rows
    assert streamed.local_files == 0
    if path == "direct" and d.num_rows:
        assert direct.files and all(url.startswith("https://") for _, url in direct.files)
        assert direct.local_files == (len(direct.files) if via == "local" else 0)
        # the island's own files (test.allsky, partitioned at ingest) are mapped; HATS catalogs
        # registered where they lie are copied (their owner may rewrite them)
        assert direct.mapped_files == (direct.local_files if "test.allsky" in query else 0)


def test_kept_connections_the_island_closed_meanwhile_are_not_an_error(client):
    """A notebook idle past the data port's keep-alive (60 s) reads again at once: its kept
    connections are closed at the other end (made so here by shutting them), and the reader
    neither fails on them nor retries on another closed one, and drops those kept too long."""
    import socket

    from archipel import direct

    query = "SELECT * FROM test.allsky"
    truth = client.sql(query, direct=False).read_all().sort_by("id")
    read = functools.partial(client.sql, local_reads=False)  # over the network, whose connections are kept
    assert read(query).read_all().num_rows == truth.num_rows
    with direct._IDLE_LOCK:
        kept = [conn for idle in direct._IDLE.values() for conn, _ in idle]
    assert len(kept) >= 2, "the reader kept fewer than two connections: the test shows nothing"
    for conn in kept:
        conn.sock.shutdown(socket.SHUT_RDWR)  # as when the island closes an idle connection
    again = read(query)
    assert again.read_all().sort_by("id").equals(truth) and again.path == "direct"
    # connections kept longer than the island keeps them are not used at all
    with direct._IDLE_LOCK:
        for idle in direct._IDLE.values():
            idle[:] = [(conn, since - direct._IDLE_SECONDS - 1) for conn, since in idle]
        old = [conn for idle in direct._IDLE.values() for conn, _ in idle]
    assert read(query).read_all().num_rows == truth.num_rows
    assert old and all(conn.sock is None for conn in old)  # closed, not reused


def test_limit_reads_only_the_first_row_groups(client):
    total = client.describe("test.allsky").num_rows
    r = client.sql("SELECT id FROM test.allsky LIMIT 2000")
    t = r.read_all()
    assert r.path == "direct" and t.num_rows == 2000
    everything = client.sql("SELECT id FROM test.allsky")
    assert len(r.files) < len(everything.files)
    assert everything.read_all().num_rows == total
    assert client.sql("SELECT * FROM test.allsky LIMIT 0").read_all().num_rows == 0


def test_result_limits_hold_on_the_direct_path(client):
    for direct in (True, False):
        with pytest.raises(archipel.ResourceExhausted, match="row limit of 1000"):
            client.sql("SELECT * FROM test.allsky", max_rows=1000, direct=direct).read_all()
        with pytest.raises(archipel.ResourceExhausted, match="byte limit of 50000"):
            client.sql("SELECT * FROM test.allsky", max_bytes=50_000, direct=direct).read_all()
    # a cone smaller than the limits is still read directly
    r = client.sql("SELECT id FROM test.allsky WHERE cone(ra, dec, 40, 20, 2)", max_rows=25_000)
    r.read_all()
    assert r.path == "direct"


@pytest.fixture(scope="module")
def pair(island, tmp_path_factory):
    """Island dbeta follows alpha and holds nothing; its [query] max_rows is 20 000."""
    beta = IslandProcess(tmp_path_factory.mktemp("direct-beta"), "dbeta",
                         extra_config=NO_SPARK + f'[federation]\npeers = ["{island.address}"]\n'
                         "[query]\nmax_rows = 20000\n").start()
    with beta.client() as c:
        wait_for(lambda: {"test.allsky", "sky.order1"} <= {d.name for d in c.datasets()}, "beta sees alpha's datasets")
    yield island, beta
    beta.stop()


def test_routed_read_is_fetched_from_the_island_holding_the_files(pair):
    alpha, beta = pair
    query = "SELECT id, ra, dec FROM test.allsky WHERE cone(ra, dec, 10.0, 20.0, 30.0)"
    with alpha.client() as a, beta.client() as b:
        truth = a.sql(query, direct=False).read_all()
        alpha_data = a.info()["data_url"]
        for local in (True, False):  # the files' descriptors come from alpha, not beta; or alpha's data port
            r = b.sql(query, route="remote", local_reads=local)
            got = r.read_all()
            assert r.path == "direct"
            assert {isl for isl, _ in r.files} == {"alpha"} and all(u.startswith(alpha_data) for _, u in r.files)
            assert r.local_files == (len(r.files) if local else 0)
            assert_same_answer(got, truth)
        # beta's own row limit travels with the routed query, on both paths
        for direct in (True, False):
            with pytest.raises(archipel.ResourceExhausted, match="row limit of 20000"):
                b.sql("SELECT * FROM test.allsky", route="remote", direct=direct).read_all()
        assert b.info()["name"] == "dbeta"


def _fetch(url: str, ca, token: str | None, headers: dict | None = None) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(url, headers={**({"Authorization": f"Bearer {token}"} if token else {}),
                                               **(headers or {})})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:  # the connection was closed (or refused) before an answer
        return 0, str(exc.reason).encode()


@pytest.mark.parametrize("via", ["local", "network"])
def test_rights_are_checked_again_by_the_island_serving_the_files(island, via):
    alice_name = f"alice{via}"  # a user per run: one token each, revoked below
    with island.client() as admin:
        admin.publish("direct.private", pa.table({"id": pa.array(range(5000), pa.int64()),
                                                  "x": pa.array([i * 0.5 for i in range(5000)])}),
                      readers=f"user:{alice_name}")
        alice = admin.create_token(alice_name).token
        bob = admin.create_token("bob").token
    try:
        with archipel.connect(island.address, token=bob, ca=island.ca) as c:
            with pytest.raises(archipel.PermissionDenied):
                c.sql("SELECT * FROM direct.private").read_all()
        with archipel.connect(island.address, token=alice, ca=island.ca) as c:
            r = c.sql("SELECT * FROM direct.private", local_reads=via == "local")
            assert r.path == "direct"
            url = r.files[0][1]
            assert r.read_all().num_rows == 5000
            assert r.local_files == (1 if via == "local" else 0)
            status, body = _fetch(url, island.ca, bob)
            assert status == 403 and b"direct.private" in body
            status, body = _fetch(url, island.ca, None)
            assert status == 401
            status, body = _fetch(url, island.ca, "arch1.forged.token")
            assert status == 401
            assert _fetch(url, island.ca, alice)[0] == 200
            # a token revoked after the plan: the files are refused, no row arrives (the
            # island's short-circuit socket checks the token again too, and hands nothing out)
            r = c.sql("SELECT * FROM direct.private", local_reads=via == "local")
            with island.client() as admin:
                (info,) = [t for t in admin.tokens() if t.user == alice_name]
                admin.revoke_token(info.id)
            with pytest.raises(Unauthenticated, match="refused the token"):
                r.read_all()
            assert r.local_files == 0
    finally:
        with island.client() as admin:
            admin.delete("direct.private")


def test_a_read_whose_files_went_is_streamed_again_and_says_why(island):
    with island.client() as c:
        c.publish("direct.gone", pa.table({"id": pa.array(range(3000), pa.int64())}))
        r = c.sql("SELECT * FROM direct.gone")
        assert r.path == "direct"
        c.delete("direct.gone")
        with pytest.raises(archipel.NotFound, match="direct.gone"):
            r.read_all()  # the files answer 404; the stream, asked again, finds no dataset
        assert r.path == "stream"


def test_cancel_stops_a_direct_read_and_its_threads(client):
    r = client.sql("SELECT * FROM test.allsky")
    assert r.path == "direct" and len(r.files) > 4
    batches = iter(r)
    first = next(batches)
    assert first.num_rows > 0
    r.cancel()
    with pytest.raises(archipel.Cancelled):
        for _ in batches:
            pass
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("direct")], "fetch threads end")
    assert client.sql("SELECT id FROM test.allsky LIMIT 3").read_all().num_rows == 3


def _raw(port: int, data: bytes, tls: bool, ca) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    if tls:
        sock = ssl.create_default_context(cafile=str(ca)).wrap_socket(sock, server_hostname="127.0.0.1")
    try:
        sock.sendall(data)
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk
            if b"\r\n\r\n" in out and len(out) > 64:
                return out
    except (OSError, ssl.SSLError):
        return b""
    finally:
        sock.close()


def test_data_port_refuses_hostile_input_and_keeps_serving(island):
    with island.client() as c:
        base = c.info()["data_url"]
        r = c.sql("SELECT * FROM test.allsky LIMIT 10")
        (_, url) = r.files[0]
        r.read_all()
    port = int(base.split(":")[2].split("/")[0])
    token = island.admin_token
    # not TLS at all, a TLS handshake cut short, and garbage after the handshake
    _raw(port, b"GET / HTTP/1.1\r\n\r\n", False, island.ca)  # plain HTTP on the TLS port: the handshake fails
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"\x16\x03\x01\x00\xff" + b"\x00" * 20)
    s.close()
    assert b" 400 " in _raw(port, b"\x00\x01garbage\r\n\r\n", True, island.ca)
    # paths outside the catalog's partitions
    for bad in ("/data/test.allsky/..%2F..%2Farchipel.toml", "/data/test.allsky/%2Fetc%2Fpasswd",
                "/data/..%2Fcatalog.db/x", "/data/test.allsky/nope.parquet", "/etc/passwd", "/data/%00/x"):
        status, _ = _fetch(base.rsplit("/data", 1)[0] + bad, island.ca, token)
        assert status == 404, bad
    # ranges
    status, body = _fetch(url, island.ca, token, {"Range": "bytes=4-99"})
    assert status == 206 and len(body) == 96
    whole = _fetch(url, island.ca, token)[1]
    assert body == whole[4:100]
    for rng in ("bytes=99999999999-", "bytes=5-2", "bytes=0-1,4-5", "lines=1-2"):
        assert _fetch(url, island.ca, token, {"Range": rng})[0] == 416, rng
    # a header far too long
    assert _fetch(url, island.ca, token, {"X-Long": "x" * 70000})[0] in (400, 431)
    # more connections than the port serves at once: the extra ones are closed, the port lives
    idle = []
    for _ in range(80):
        try:
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    time.sleep(0.5)
    for s in idle:
        s.close()
    wait_for(lambda: _fetch(url, island.ca, token)[0] == 200, "the data port serves again")
    with island.client() as c:
        assert c.sql("SELECT id FROM test.allsky LIMIT 5").read_all().num_rows == 5


def test_the_web_face_sends_islands_to_the_data_port_and_serves_users_itself(island):
    import http.client
    from urllib.parse import urlsplit

    with island.client() as c:
        info = c.info()
        r = c.sql("SELECT * FROM test.allsky LIMIT 10")
        pid = r.files[0][1].split("/test.allsky/", 1)[1]
        r.read_all()
    web = urlsplit(info["http_url"])
    ctx = ssl.create_default_context(cafile=str(island.ca))
    ctx.load_cert_chain(str(island.folder / "island.pem"), str(island.folder / "island-key.pem"))
    conn = http.client.HTTPSConnection(web.hostname, web.port, context=ctx, timeout=30)
    conn.request("GET", f"/data/test.allsky/{pid}")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 307 and resp.getheader("Location") == f"{info['data_url']}/test.allsky/{pid}"
    conn.close()
    status, body = _fetch(f"{info['http_url']}/test.allsky/{pid}", island.ca, island.admin_token)
    assert status == 200 and body[:4] == b"PAR1"  # a user's token: served by the web face itself


def test_short_circuit_socket_refuses_hostile_input_and_keeps_serving(island):
    """The island's descriptor socket (same-host reads) answers malformed, forged and
    out-of-range requests with an error and no descriptor, and serves the next read."""
    import json
    import struct

    with island.client() as c:
        r = c.sql("SELECT * FROM test.allsky LIMIT 10")
        local = r._direct.spec.local
        r.read_all()
        assert local.socket and r.local_files == len(r.files)

    def ask(data: bytes) -> tuple[dict, list[int]]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect("\0" + local.socket)
        try:
            s.sendall(data)
            head, fds, _, _ = socket.recv_fds(s, 4, 4)
            (n,) = struct.unpack(">I", head)
            body = b""
            while len(body) < n:
                body += s.recv(n - len(body))
            return json.loads(body), fds
        finally:
            s.close()

    good = {"grant": local.grant.hex(), "nonce": "cd" * 16, "files": [0]}
    for data in (b"\x00\xff garbage\n", json.dumps({**good, "grant": "11" * 16}).encode() + b"\n",
                 json.dumps({**good, "files": [99]}).encode() + b"\n", b"{" * 70000):
        answer, fds = ask(data)
        assert fds == [] and answer["error"], data[:40]
    answer, fds = ask(json.dumps(good).encode() + b"\n")  # the grant itself still works, for its holder
    assert len(fds) == 1
    os.close(fds[0])
    with island.client() as c:
        again = c.sql("SELECT id FROM test.allsky LIMIT 5")
        assert again.read_all().num_rows == 5 and again.local_files == 1
