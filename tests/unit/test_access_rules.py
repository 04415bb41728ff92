"""The access rules as a table (caller x dataset facts x action), tokens made and checked
without any server, and signed catalog changes."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from archipel.errors import InvalidArgument, PermissionDenied, Unauthenticated
from federation.pki import create_ca, issue_island, load_credentials, verify_island_cert
from island.security import tokens
from metacatalog import access
from metacatalog.access import ANONYMOUS, Access, Caller
from metacatalog.model import Change
from metacatalog.signing import verify_signature

ALICE = Caller(user="alice", groups=frozenset({"astro"}))
BOB = Caller(user="bob", groups=frozenset({"astro"}))
EVE = Caller(user="eve")
ADMIN = Caller(user="root", admin=True)
ISLAND = Caller(island="beta")
TODAY = dt.date(2026, 12, 3)

PUBLIC = Access("alice", ("public",))
GROUP = Access("alice", ("group:astro",))
OWNER_ONLY = Access("alice", ())
NAMED = Access("alice", ("user:eve",))
EMBARGO_OVER = Access("alice", (), "2026-12-03")
EMBARGO_ON = Access("alice", (), "2026-12-04")


@pytest.mark.parametrize("caller,facts,expected", [
    (ANONYMOUS, PUBLIC, True), (ANONYMOUS, GROUP, False), (ANONYMOUS, EMBARGO_OVER, True),
    (ANONYMOUS, EMBARGO_ON, False),
    (ALICE, OWNER_ONLY, True), (ALICE, GROUP, True), (ALICE, EMBARGO_ON, True),
    (BOB, GROUP, True), (BOB, OWNER_ONLY, False), (BOB, NAMED, False), (BOB, EMBARGO_ON, False),
    (EVE, GROUP, False), (EVE, NAMED, True), (EVE, OWNER_ONLY, False), (EVE, EMBARGO_OVER, True),
    (ADMIN, OWNER_ONLY, True), (ADMIN, EMBARGO_ON, True),
    (ISLAND, OWNER_ONLY, True),  # islands replicate for their users, who are checked there
])
def test_who_may_read(caller, facts, expected):
    assert access.may_read(caller, facts, TODAY) is expected


def test_writes_need_the_owner_or_an_admin():
    access.check_owner(ALICE, "d", GROUP, "append to")
    access.check_owner(ADMIN, "d", GROUP, "append to")
    for caller in (BOB, EVE, ANONYMOUS, ISLAND):
        with pytest.raises(PermissionDenied, match="only its owner alice"):
            access.check_owner(caller, "d", GROUP, "append to")
    with pytest.raises(PermissionDenied, match="admin"):
        access.check_admin(BOB, "making tokens")
    with pytest.raises(PermissionDenied, match="'compute' right"):
        access.check_right(BOB, "compute", "a Python UDF")
    access.check_right(Caller(user="x", rights=frozenset({"compute"})), "compute", "a Python UDF")
    access.check_right(ADMIN, "compute", "a Python UDF")


@pytest.mark.parametrize("text,expected", [
    (None, ("public",)), ("public", ("public",)), ("user:a,group:b", ("user:a", "group:b")),
    (["group:b", "group:b"], ("group:b",)), ("", ()), ([], ()),
])
def test_readers_parse(text, expected):
    assert access.parse_readers(text) == expected


@pytest.mark.parametrize("bad", ["everyone", "user:", "root:x", "group:a b", "user:../x", "user:" + "x" * 80])
def test_bad_readers_are_refused(bad):
    with pytest.raises(InvalidArgument, match="reader|name"):
        access.parse_readers(bad)


def test_public_after_parses_dates_only():
    assert access.parse_public_after("2027-01-31") == "2027-01-31"
    assert access.parse_public_after(dt.date(2027, 1, 31)) == "2027-01-31"
    for bad in ("tomorrow", "2027-13-01", "31/01/2027"):
        with pytest.raises(InvalidArgument, match="public_after"):
            access.parse_public_after(bad)


@pytest.fixture(scope="module")
def two_archipelagos(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    create_ca(root / "ca")
    create_ca(root / "other")
    issue_island(root / "ca", root / "alpha", "alpha", "127.0.0.1")
    issue_island(root / "ca", root / "beta", "beta", "127.0.0.1")
    issue_island(root / "other", root / "evil", "evil", "127.0.0.1")
    return {n: load_credentials(root / n, n) for n in ("alpha", "beta", "evil")}, root


def test_certs_name_their_island_and_refuse_another_ca(two_archipelagos):
    creds, root = two_archipelagos
    assert verify_island_cert(creds["alpha"].ca, creds["beta"].cert) == "beta"
    with pytest.raises(PermissionDenied, match="not issued by this archipelago"):
        verify_island_cert(creds["alpha"].ca, creds["evil"].cert)
    with pytest.raises(InvalidArgument, match="already holds a CA"):
        create_ca(root / "ca")
    assert (root / "ca" / "ca-key.pem").stat().st_mode & 0o077 == 0
    assert (root / "alpha" / "island-key.pem").stat().st_mode & 0o077 == 0
    assert not (root / "alpha" / "ca-key.pem").exists()  # the CA's key stays in the CA folder


def test_a_token_made_at_one_island_is_honoured_at_another_and_no_other(two_archipelagos):
    creds, _ = two_archipelagos
    token, claims = tokens.mint(creds["alpha"], "bob", ["astro"], ["compute"], expires_in=60)
    got = tokens.verify(creds["beta"], token, lambda _id: False)
    assert (got.user, got.groups, got.rights, got.issuer, got.admin) == ("bob", ("astro",), ("compute",), "alpha",
                                                                          False)
    assert got.caller(token).raw_token == token
    with pytest.raises(Unauthenticated, match="not made in this archipelago"):
        tokens.verify(creds["evil"], token, lambda _id: False)
    with pytest.raises(Unauthenticated, match="revoked"):
        tokens.verify(creds["beta"], token, lambda i: i == claims.id)
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(creds["beta"], token, lambda _id: False, now=time.time() + 120)
    evil, _ = tokens.mint(creds["evil"], "bob", admin=True)
    with pytest.raises(Unauthenticated, match="not made in this archipelago"):
        tokens.verify(creds["alpha"], evil, lambda _id: False)


def test_every_one_byte_change_of_a_token_is_refused(two_archipelagos):
    creds, _ = two_archipelagos
    token, _ = tokens.mint(creds["alpha"], "bob")
    for i in range(0, len(token), max(1, len(token) // 97)):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        with pytest.raises(Unauthenticated):
            tokens.verify(creds["alpha"], flipped, lambda _id: False)
    for bad in ("", "x" * 9000, "Bearer x", "arch1..", "arch1.e30.AAAA"):
        with pytest.raises(Unauthenticated):
            tokens.verify(creds["alpha"], bad, lambda _id: False)


def test_bad_token_requests_are_refused(two_archipelagos):
    creds, _ = two_archipelagos
    with pytest.raises(InvalidArgument):
        tokens.mint(creds["alpha"], "a b")
    with pytest.raises(InvalidArgument, match="unknown right"):
        tokens.mint(creds["alpha"], "bob", rights=["root"])
    with pytest.raises(InvalidArgument, match="at most 64 groups"):
        tokens.mint(creds["alpha"], "bob", groups=[f"g{i}" for i in range(65)])
    token, _ = tokens.mint(creds["alpha"], "bob", groups=[f"group{i:02d}" for i in range(64)], rights=["compute"])
    assert len(token) < tokens.MAX_TOKEN_CHARS and tokens.verify(creds["alpha"], token, lambda _id: False)


def test_changes_are_signed_by_their_origin(two_archipelagos):
    creds, _ = two_archipelagos
    change = Change("alpha", 3, "dataset.delete", "x.y", {}, 1.5, b"", "{}")
    sig = creds["alpha"].sign(change.signed_bytes())
    assert verify_signature(creds["alpha"].cert_der, sig, change.signed_bytes())
    forged = Change("alpha", 3, "dataset.delete", "x.z", {}, 1.5, b"", "{}")
    assert not verify_signature(creds["alpha"].cert_der, sig, forged.signed_bytes())
    assert not verify_signature(creds["beta"].cert_der, sig, change.signed_bytes())


def test_fair_shares_count_per_user_and_name_the_limit():
    from archipel.errors import ResourceExhausted
    from island.shares import FairShares

    shares = FairShares()
    first = shares.take("bob", "concurrent_queries", 2, "queries")
    shares.take("bob", "concurrent_queries", 2, "queries")
    with pytest.raises(ResourceExhausted, match=r"bob has 2 queries open: \[limits\] concurrent_queries = 2"):
        shares.take("bob", "concurrent_queries", 2, "queries")
    shares.take("eve", "concurrent_queries", 2, "queries")  # another user's share is their own
    first()
    first()  # a release counts once
    assert shares.held("bob", "concurrent_queries") == 1
    shares.take("bob", "concurrent_queries", 2, "queries")
    assert shares.held("bob", "concurrent_queries") == 2
    for _ in range(100):
        shares.take("x", "subscriptions", 0, "streams")  # 0: no limit
