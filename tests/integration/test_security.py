"""Who may do what, tried on real islands over TLS: three islands of the test archipelago's CA
(a holds the data, b and c follow it; c holds replicas) and a fourth, d, of another CA. Every
refusal is checked for its message, for the island still serving, and for nothing leaked or
changed; the positive side reads exactly the truth rows."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request

import grpc
import pyarrow as pa
import pytest

import archipel
from archipel.errors import (FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted,
                             Unauthenticated, Unavailable)
from archipel.v1 import island_pb2 as pb
from archipel.v1 import island_pb2_grpc as pb_grpc
from islands import SHARED_HATS, IslandProcess, archipelago, cli, wait_for

pytestmark = pytest.mark.integration

NO_SPARK = "[spark]\nstart = false\n"
LIMITS = "[limits]\nconcurrent_queries = 1\nresult_bytes = 16000000\nsubscriptions = 1\n"


def _rows(n: int, seed: int) -> pa.Table:
    return pa.table({"id": pa.array(range(seed, seed + n), pa.int64()), "mag": pa.array([float(i % 30) for i in range(n)])})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    a = IslandProcess(root / "a", "a", extra_config=NO_SPARK + LIMITS + "[ingest]\npartition_rows = 1500\n").start()
    peers = f'[federation]\npeers = ["{a.address}"]\n'
    b = IslandProcess(root / "b", "b", extra_config=NO_SPARK + peers).start()
    c = IslandProcess(root / "c", "c", extra_config=NO_SPARK + peers + "[limits]\npinned_bytes = 200000\n").start()
    cli("certs", "init", str(root / "other-ca"))
    d = IslandProcess(root / "d", "d", extra_config=NO_SPARK, ca_dir=root / "other-ca").start()
    arch = archipelago()
    tokens = {
        "alice": arch.token("alice", groups=("astro",)),
        "bob": arch.token("bob", groups=("astro",)),
        "eve": arch.token("eve"),
    }
    with a.client() as ca:
        ca.ingest(str(SHARED_HATS / "small_sky_o1_collection"), "sky.secret", readers="group:astro")
        ca.ingest(str(SHARED_HATS / "small_sky_source"), "sky.open")
    with a.client(tokens["alice"]) as al:
        al.publish("alice.private", _rows(500, 0), readers="user:alice")
        al.publish("alice.embargo", _rows(50, 1000), readers=[], public_after="2001-01-01")
        al.publish("alice.future", _rows(50, 2000), readers=[], public_after="2999-01-01")
    names = {"sky.secret", "sky.open", "alice.private", "alice.embargo", "alice.future"}
    for isl in (b, c):
        with isl.client() as cl:
            wait_for(lambda: names <= {x.name for x in cl.datasets()}, "the catalog reached b and c")
    yield a, b, c, d, tokens
    for isl in (a, b, c, d):
        assert isl.stop() == 0, isl.log.read_text()[-3000:]


def _serving(isl: IslandProcess) -> None:
    with isl.client() as c:
        assert c.info()["name"] == isl.name


def _truth_count(a: IslandProcess, name: str) -> int:
    with a.client() as c:
        return c.sql(f"SELECT count(*) AS n FROM {name}").read_all()["n"][0].as_py()


# -- transport and tokens ------------------------------------------------------------------
def test_plaintext_to_a_tls_port_is_refused(world):
    a, *_ = world
    for address in (a.address, a.peer_address):
        with grpc.insecure_channel(address) as channel:
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.IslandStub(channel).GetInfo(pb.GetInfoRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    _serving(a)


def test_calls_without_a_valid_token_are_refused_everywhere(world):
    a, b, c, d, tokens = world
    arch = archipelago()
    bad = {
        "": "needs a token",
        arch.token("bob", expires_in=1, now=time.time() - 10): "expired",
        d.admin_token: "not made in this archipelago",
        "arch1.garbage.x": "malformed",
    }
    t = tokens["bob"]
    middle = len(t) // 2
    bad[t[:middle] + ("A" if t[middle] != "A" else "B") + t[middle + 1:]] = "token"  # altered by one byte
    for token, message in bad.items():
        for isl in (a, b):
            with isl.client(token) as cl:
                with pytest.raises(Unauthenticated, match=message):
                    cl.datasets()
                with pytest.raises(Unauthenticated):
                    cl.sql("SELECT count(*) FROM sky.open").read_all()
    # the altered token is refused, the original one works
    with a.client(tokens["bob"]) as cl:
        assert cl.whoami()["user"] == "bob"
    # a token of this archipelago means nothing to d
    with d.client(arch.admin_token) as cl:
        with pytest.raises(Unauthenticated, match="not made in this archipelago"):
            cl.datasets()
    # the wrong CA: the TLS handshake fails with a message naming the island
    with archipel.connect(a.address, token=tokens["bob"], ca=d.ca) as cl:
        with pytest.raises(Unavailable, match=a.address):
            cl.datasets()
    _serving(a)


def test_a_token_revoked_at_one_island_is_refused_at_every_other(world):
    a, b, c, *_ = world
    with a.client() as ca:
        made = ca.create_token("carol", groups=["astro"], expires="1h")
    assert made.token and made.user == "carol" and made.expires > time.time() + 3500
    with c.client(made.token) as cl:
        assert cl.whoami()["user"] == "carol"
    with b.client() as cb:  # made at a, revoked at b
        wait_for(lambda: made.id in {t.id for t in cb.tokens()}, "the token record reached b")
        cb.revoke_token(made.id)
    for isl in (a, c):
        with isl.client(made.token) as cl:
            wait_for(lambda: _refused(cl), f"the revocation reached {isl.name}")
            with pytest.raises(Unauthenticated, match="revoked"):
                cl.datasets()
    with a.client() as ca:
        listed = {t.id: t for t in ca.tokens()}
        assert listed[made.id].revoked_by == "b"
        with pytest.raises(NotFound):
            ca.revoke_token("00112233445566ff")
        with pytest.raises(InvalidArgument):
            ca.revoke_token("../etc")


def _refused(cl) -> bool:
    try:
        cl.datasets()
        return False
    except Unauthenticated:
        return True


def test_token_management_needs_an_admin_and_checks_its_input(world):
    a, _b, _c, _d, tokens = world
    with a.client(tokens["eve"]) as cl:
        with pytest.raises(PermissionDenied, match="admin"):
            cl.create_token("mallory", admin=True)
        with pytest.raises(PermissionDenied, match="admin"):
            cl.tokens()
        with pytest.raises(PermissionDenied, match="admin"):
            cl.add_peer("127.0.0.1:1")
    with a.client() as cl:
        for kwargs, message in (({"user": "a b"}, "not valid"), ({"user": "x", "rights": ["root"]}, "unknown right"),
                                ({"user": "x", "expires": "-5"}, "duration"), ({"user": "x", "expires": "soon"},
                                                                              "duration")):
            with pytest.raises(InvalidArgument, match=message):
                cl.create_token(**kwargs)
    _serving(a)


# -- reading ---------------------------------------------------------------------------------
def test_restricted_datasets_are_hidden_and_refused_on_every_query_path(world):
    a, b, _c, _d, tokens = world
    for isl in (a, b):
        with isl.client(tokens["eve"]) as cl:
            names = {x.name for x in cl.datasets()}
            assert "sky.open" in names and "alice.embargo" in names
            assert not names & {"sky.secret", "sky.secret_margin", "sky.secret_id_index", "alice.private",
                                "alice.future"}
            with pytest.raises(PermissionDenied, match="eve may not read dataset 'sky.secret'"):
                cl.describe("sky.secret")
            with pytest.raises(PermissionDenied, match="sky.secret"):
                cl.sql("SELECT count(*) FROM sky.secret").read_all()
            with pytest.raises(PermissionDenied, match="sky.secret"):  # a join with a public dataset
                cl.sql("SELECT s.id FROM sky.open o JOIN sky.secret s ON o.object_id = s.id").read_all()
            with pytest.raises(PermissionDenied, match="sky.secret"):  # a subquery
                cl.sql("SELECT count(*) FROM sky.open WHERE object_id IN (SELECT id FROM sky.secret)").read_all()
            with pytest.raises(PermissionDenied, match="sky.secret"):
                cl.explain("SELECT * FROM sky.secret")
            for route in ("remote", "auto"):  # pushed down from b: a decides again
                with pytest.raises(PermissionDenied, match="alice.private"):
                    cl.sql("SELECT * FROM alice.private", route=route).read_all()
            with pytest.raises(PermissionDenied, match="alice.future"):
                cl.sql("SELECT * FROM alice.future").read_all()
    for isl in (a, b):
        _serving(isl)


def test_owner_group_grants_and_public_after_read_exactly_the_truth(world):
    a, b, _c, _d, tokens = world
    truth_secret = _truth_count(a, "sky.secret")
    assert truth_secret == 131
    for isl in (a, b):  # b routes to a with the caller's token
        with isl.client(tokens["bob"]) as cl:  # group astro
            assert cl.sql("SELECT count(*) AS n FROM sky.secret").read_all()["n"][0].as_py() == truth_secret
            ids = cl.sql("SELECT id FROM sky.secret ORDER BY id").read_all()["id"].to_pylist()
        with a.client() as admin:
            assert ids == admin.sql("SELECT id FROM sky.secret ORDER BY id").read_all()["id"].to_pylist()
        with isl.client(tokens["alice"]) as cl:  # the owner
            got = cl.sql("SELECT id FROM alice.private ORDER BY id").read_all()
            assert got["id"].to_pylist() == list(range(500))
        with isl.client(tokens["eve"]) as cl:  # public_after in the past: open to all
            assert cl.sql("SELECT count(*) AS n FROM alice.embargo").read_all()["n"][0].as_py() == 50
    with a.client(tokens["eve"]) as cl:
        with pytest.raises(PermissionDenied, match="only its owner"):
            cl.grant("alice.private", "user:eve")
    with b.client(tokens["alice"]) as cl:  # granted at b: the change is made at the origin a
        d = cl.grant("alice.private", "user:eve")
        assert d.owner == "alice" and set(d.readers) == {"user:alice", "user:eve"}
    with b.client(tokens["eve"]) as cl:
        wait_for(lambda: "alice.private" in {x.name for x in cl.datasets()}, "the grant reached b")
        assert cl.sql("SELECT count(*) AS n FROM alice.private").read_all()["n"][0].as_py() == 500
    with a.client(tokens["alice"]) as cl:
        cl.revoke("alice.private", "user:eve")
    with b.client(tokens["eve"]) as cl:
        wait_for(lambda: "alice.private" not in {x.name for x in cl.datasets()}, "the revocation reached b")
        with pytest.raises(PermissionDenied):
            cl.sql("SELECT count(*) FROM alice.private").read_all()
    with a.client(tokens["alice"]) as cl:
        for reader in ("user:", "root:x", "group:a b", "everyone"):
            with pytest.raises(InvalidArgument, match="reader"):
                cl.grant("alice.private", reader)
        with pytest.raises(InvalidArgument, match="public_after"):
            cl.publish("alice.bad", _rows(3, 0), public_after="next week")
        with pytest.raises(InvalidArgument, match="reader"):
            cl.publish("alice.bad", _rows(3, 0), readers="user:x,nobody")
        assert "alice.bad" not in {x.name for x in cl.datasets()}
        assert cl.describe("alice.private").readers == ("user:alice",)


def test_a_replica_island_enforces_the_origins_rights(world):
    a, _b, c, _d, tokens = world
    with c.client() as cc:
        job = cc.replicate("sky.secret", cone=(315.0, -60.0, 4.0))
        job.wait()
        held = cc.cache().datasets.get("sky.secret", (0, 0))[0]
        assert held > 0
    with c.client(tokens["eve"]) as cl:
        with pytest.raises(PermissionDenied, match="sky.secret"):
            cl.sql("SELECT count(*) FROM sky.secret WHERE cone(ra, dec, 315, -60, 4)", route="local").read_all()
    with c.client(tokens["bob"]) as cl:
        got = cl.sql("SELECT id FROM sky.secret WHERE cone(ra, dec, 315, -60, 4) ORDER BY id", route="local")
        ids = got.read_all()["id"].to_pylist()
    with a.client() as ca:
        want = ca.sql("SELECT id FROM sky.secret WHERE cone(ra, dec, 315, -60, 4) ORDER BY id").read_all()
    assert ids == want["id"].to_pylist() and ids


def test_http_data_files_need_an_island_or_a_reader(world):
    a, _b, _c, _d, tokens = world
    with a.client() as ca:
        base = ca.info()["http_url"]
        part = ca.describe("sky.secret").partitions[0]
    assert base.startswith("https://")
    url = f"{base}/sky.secret/{part.path}"
    ctx = ssl.create_default_context(cafile=str(a.ca))

    def get(token: str | None, context=ctx) -> tuple[int, bytes]:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, context=context, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    code, body = get(None)
    assert code == 401 and b"needs a token" in body
    code, body = get(tokens["eve"])
    assert code == 403 and b"eve may not read" in body
    code, body = get(tokens["bob"])
    assert code == 200 and len(body) == part.num_bytes
    # an island's certificate gets in without a token (replication between islands)
    island_ctx = ssl.create_default_context(cafile=str(a.ca))
    island_ctx.load_cert_chain(str(a.folder / "island.pem"), str(a.folder / "island-key.pem"))
    code, body = get(None, island_ctx)
    assert code == 200 and len(body) == part.num_bytes
    # plain HTTP to the TLS port gets nothing
    with pytest.raises(Exception):
        urllib.request.urlopen(url.replace("https://", "http://"), timeout=5).read()
    _serving(a)


def test_subscriptions_deliver_nothing_of_a_dataset_the_subscriber_may_not_read(world):
    a, b, _c, _d, tokens = world
    with a.client(tokens["alice"]) as al:
        al.publish("alice.stream", _rows(10, 0), readers="user:alice")
        al.publish("alice.public_stream", _rows(10, 0))
    with b.client() as cb:
        wait_for(lambda: {"alice.stream", "alice.public_stream"} <= {x.name for x in cb.datasets()}, "b's catalog")
    with b.client(tokens["eve"]) as cl, cl.subscribe("alice.*", mode="rows", reconnect=0) as sub:
        with a.client(tokens["alice"]) as al:
            al.append("alice.stream", _rows(5, 100))         # eve may not read it: nothing for her
            al.append("alice.public_stream", _rows(7, 200))  # after it in a's log: the first she gets
        first = next(iter(sub))
        assert first.dataset == "alice.public_stream"
        assert sorted(first.batch.column("id").to_pylist()) == list(range(200, 207))
    with b.client(tokens["alice"]) as cl, cl.subscribe("alice.stream", mode="rows", start_at="earliest",
                                                      reconnect=0) as sub:
        got = next(iter(sub))  # the owner gets hers
        assert got.dataset == "alice.stream"
    with b.client(tokens["eve"]) as cl:
        with pytest.raises(InvalidArgument):  # others' schemas are not checked (nor shown) for her
            cl.subscribe("alice.public_stream", where="nosuchcolumn > 1")
    _serving(b)


def test_writes_need_the_owner_or_an_admin(world):
    a, _b, _c, _d, tokens = world
    before = _truth_count(a, "alice.private")
    with a.client(tokens["eve"]) as cl:
        with pytest.raises(PermissionDenied, match="only its owner alice"):
            cl.append("alice.private", _rows(3, 9000))
        with pytest.raises(PermissionDenied, match="only its owner alice"):
            cl.delete("alice.private")
        with pytest.raises(PermissionDenied, match="admin"):
            cl.ingest("/etc", "eve.etc")
    with archipel.connect(a.address, token="", ca=a.ca) as cl:
        with pytest.raises(Unauthenticated):
            cl.publish("anon.t", _rows(3, 0))
    assert _truth_count(a, "alice.private") == before
    with a.client() as ca:
        names = {x.name for x in ca.datasets()}
        assert "eve.etc" not in names and "anon.t" not in names
        # an admin may: append for the owner (the dataset stays hers)
        ca.append("alice.private", _rows(2, 9000))
        assert ca.describe("alice.private").num_rows == before + 2 and ca.describe("alice.private").owner == "alice"
    _serving(a)


# -- peers -----------------------------------------------------------------------------------
def test_an_island_of_another_ca_cannot_join(world):
    a, _b, _c, d, _tokens = world
    with a.client() as ca:
        with pytest.raises((Unavailable, FailedPrecondition)):
            ca.add_peer(d.address)
        assert "d" not in {p["island"] for p in ca.peers()}
    with d.client() as cd:
        with pytest.raises((Unavailable, FailedPrecondition)):
            cd.add_peer(a.address)
        assert "sky.open" not in {x.name for x in cd.datasets()}
    with a.client() as ca:
        assert "d" not in {p["island"] for p in ca.peers()}
    _serving(a)


# -- fair shares and the audit log -------------------------------------------------------------
def test_per_user_limits_name_the_limit(world):
    a, _b, _c, _d, tokens = world
    with a.client(tokens["alice"]) as al:
        al.publish("alice.big", pa.table({"x": pa.array(range(3_000_000), pa.int64())}), readers="user:alice")
    with a.client(tokens["alice"]) as al:
        with pytest.raises(ResourceExhausted, match=r"\[limits\] result_bytes"):
            al.sql("SELECT * FROM alice.big").read_all()
        small = al.sql("SELECT * FROM alice.big LIMIT 10").read_all()
        assert small.num_rows == 10
        with al.subscribe("alice.*", reconnect=0) as first:
            assert first.info is not None
            with pytest.raises(ResourceExhausted, match=r"\[limits\] subscriptions = 1"):
                with al.subscribe("sky.*", reconnect=0) as second:
                    next(iter(second))
        with b_client_of(world, tokens["bob"]) as other:  # another user's share is their own
            with other.subscribe("sky.*", reconnect=0) as s:
                assert s.info is not None
    with world[2].client(tokens["bob"]) as cl:  # at c: a rule over the user's pinned_bytes
        with pytest.raises(ResourceExhausted, match=r"\[limits\] pinned_bytes = 200000"):
            cl.replicate("sky.open").wait()
    _serving(a)


def b_client_of(world, token):
    return world[0].client(token)


def test_concurrent_queries_limit(world):
    a, _b, _c, _d, tokens = world
    with a.client(tokens["alice"]) as al:
        held = al.sql("SELECT x FROM alice.big WHERE x < 1900000")  # not read: the stream stays open
        try:
            with pytest.raises(ResourceExhausted, match=r"\[limits\] concurrent_queries = 1"):
                al.sql("SELECT count(*) FROM alice.big").read_all()
        finally:
            held.cancel()
        wait_for(lambda: _one_query_runs(al), "the first query ended")
    with a.client(tokens["bob"]) as cl:
        assert cl.sql("SELECT count(*) AS n FROM sky.open").read_all()["n"][0].as_py() == 17161


def _one_query_runs(cl) -> bool:
    try:
        return cl.sql("SELECT count(*) AS n FROM alice.big").read_all()["n"][0].as_py() == 3_000_000
    except ResourceExhausted:
        return False


def test_the_audit_log_says_who_did_what(world):
    a, _b, _c, _d, tokens = world
    with a.client(tokens["eve"]) as cl:
        with pytest.raises(PermissionDenied):
            cl.sql("SELECT * FROM sky.secret").read_all()
        cl.sql("SELECT id FROM alice.embargo").read_all()
        mine = cl.audit()
        assert mine and {e["user"] for e in mine} == {"eve"}
        with pytest.raises(PermissionDenied):
            cl.audit(user="alice")
    with a.client() as ca:
        entries = ca.audit(user="eve")
    refused = [e for e in entries if e["method"] == "Query" and e["outcome"] == "refused"]
    assert refused and "sky.secret" in refused[-1]["datasets"]
    ok = [e for e in entries if e["method"] == "Query" and e["outcome"] == "ok" and "alice.embargo" in e["datasets"]]
    assert ok and ok[-1]["rows"] == 50 and ok[-1]["bytes"] > 0
    out = cli("audit", "--user", "eve", "--since", "1h", env={"ARCHIPEL_ISLAND": a.address,
                                                               "ARCHIPEL_TOKEN": a.admin_token})
    assert "refused" in out.stdout and "sky.secret" in out.stdout


# -- the command line ----------------------------------------------------------------------------
def test_cli_tokens_grant_and_readers(world, tmp_path):
    a, *_ = world
    env = {"ARCHIPEL_ISLAND": a.address, "ARCHIPEL_TOKEN": a.admin_token, "ARCHIPEL_CA": str(a.ca)}
    made = cli("tokens", "create", "--user", "frank", "--group", "lab", "--right", "compute", "--expires", "12h",
               env=env).stdout.strip().splitlines()
    token = made[-1]
    assert token.startswith("arch1.") and "frank" in made[0]
    listed = cli("tokens", "list", env=env).stdout
    assert "frank" in listed and "valid" in listed
    path = tmp_path / "t.parquet"
    import pyarrow.parquet as pq

    pq.write_table(_rows(20, 0), path)
    out = cli("publish", str(path), "--dataset", "frank.t", "--readers", "group:lab", "--public-after",
              "2999-12-31", "--token", token, env=env).stdout
    assert "published frank.t" in out
    desc = cli("describe", "frank.t", "--token", token, env=env).stdout
    assert "owner     frank" in desc and "group:lab" in desc and "2999-12-31" in desc
    who = cli("whoami", "--token", token, env=env).stdout
    assert "frank" in who and "compute" in who
    refused = cli("describe", "frank.t", "--token", archipelago().token("eve"), env=env, check=False)
    assert refused.returncode == 1 and "eve may not read" in refused.stderr
    assert "frank" in cli("grant", "frank.t", "user:eve", "--token", token, env=env).stdout
    bad = cli("grant", "frank.t", "nobody", "--token", token, env=env, check=False)
    assert bad.returncode == 1 and "reader" in bad.stderr
    token_id = made[0].split()[1]
    cli("tokens", "revoke", token_id, env=env)
    gone = cli("whoami", "--token", token, env=env, check=False)
    assert gone.returncode == 1 and "revoked" in gone.stderr
    noca = cli("datasets", env={**env, "ARCHIPEL_CA": str(tmp_path / "missing.pem")}, check=False)
    assert noca.returncode == 1 and "missing.pem" in noca.stderr


def test_anonymous_read_public_island(tmp_path):
    isl = IslandProcess(tmp_path / "p", "p", extra_config=NO_SPARK + '[security]\nanonymous = "read-public"\n')
    isl.start()
    try:
        with isl.client() as admin:
            admin.publish("p.open", _rows(5, 0))
            admin.publish("p.closed", _rows(5, 0), readers="group:x")
        with archipel.connect(isl.address, token="", ca=isl.ca) as anon:
            assert anon.whoami()["anonymous"]
            assert {x.name for x in anon.datasets()} == {"p.open"}
            assert anon.sql("SELECT count(*) AS n FROM p.open").read_all()["n"][0].as_py() == 5
            with pytest.raises(PermissionDenied, match="anonymous may not read"):
                anon.sql("SELECT * FROM p.closed").read_all()
            with pytest.raises(PermissionDenied, match="token"):
                anon.publish("p.mine", _rows(2, 0))
            with pytest.raises(PermissionDenied, match="admin"):
                anon.tokens()
    finally:
        assert isl.stop() == 0


def test_island_init_with_a_bad_ca_or_name_leaves_nothing(tmp_path):
    target = tmp_path / "new"
    for args, message in (((["--ca", str(tmp_path / "nope")]), "is not a CA folder"),
                          (["--name", "bad name"], "not a valid island name")):
        argv = ["island", "init", str(target), "--name", "n", *args] if args[0] == "--ca" else \
            ["island", "init", str(target), *args]
        out = cli(*argv, check=False)
        assert out.returncode == 1 and message in out.stderr, out.stderr
        assert not target.exists()
    (tmp_path / "notca").mkdir()
    (tmp_path / "notca" / "ca.pem").write_text("not a certificate")
    (tmp_path / "notca" / "ca-key.pem").write_text("not a key")
    out = cli("island", "init", str(target), "--name", "n", "--ca", str(tmp_path / "notca"), check=False)
    assert out.returncode == 1 and "not a readable CA" in out.stderr and not target.exists()
    cli("island", "init", str(target), "--name", "n")
    assert {p.name for p in target.iterdir()} == {"archipel.toml", "ca", "ca.pem", "island.pem", "island-key.pem",
                                                  "catalog.sqlite", "admin.token"}
    again = cli("island", "init", str(target), "--name", "m", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert (target / "island.pem").read_bytes()  # the island made first is untouched
    from federation.pki import load_credentials

    assert load_credentials(target, "n").name == "n"
