"""A change relayed again by other peers (every island of a full mesh relays every other
island's changes): the copy identical to the record is dropped without a signature check or a
write transaction; a copy that differs is checked as any change (forged: refused; signed:
a divergence)."""

from __future__ import annotations

import json

import pytest

from archipel.errors import PermissionDenied
from archipel.v1 import peer_pb2 as ppb
from federation.peers import Archipelago, PeerLink
from federation.pki import create_ca, issue_island, load_credentials
from metacatalog.model import Change
from metacatalog.store import CatalogStore


@pytest.fixture()
def mesh(tmp_path):
    create_ca(tmp_path / "ca", "relay-tests")
    for name in ("here", "origin"):
        issue_island(tmp_path / "ca", tmp_path / name, name, "127.0.0.1")
    here = load_credentials(tmp_path / "here", "here")
    origin = load_credentials(tmp_path / "origin", "origin")
    store = CatalogStore(tmp_path / "catalog.sqlite", "here")
    arch = Archipelago(store, here, "127.0.0.1:1")
    # the link to a third island, which relays the origin's changes
    return arch, PeerLink(arch, "127.0.0.1:2", island="relay"), origin


def _change(creds, seq: int, payload: dict, signature: bytes | None = None) -> ppb.CatalogChange:
    text = json.dumps(payload)
    raw = Change("origin", seq, "island.put", "origin", {}, 1.0, b"", text)
    return ppb.CatalogChange(origin="origin", seq=seq, op="island.put", key="origin", payload_json=text, ts=1.0,
                             signature=creds.sign(raw.signed_bytes()) if signature is None else signature,
                             origin_cert=creds.cert_der)


def test_an_identical_relayed_copy_costs_no_check_and_no_commit(mesh, monkeypatch):
    arch, link, origin = mesh
    payload = {"http": "https://127.0.0.1:9/data", "root": ""}
    first = _change(origin, 1, payload)
    checked = []
    real_check = arch.check_signed
    monkeypatch.setattr(arch, "check_signed", lambda c, der: (checked.append(c.seq), real_check(c, der)))
    link._apply(first)
    assert checked == [1] and arch.store.sequence("origin") == 1
    assert arch.store.islands()["origin"][0] == "https://127.0.0.1:9/data"
    generation = arch.store.generation

    link._apply(first)  # relayed again
    link._apply(_change(origin, 1, payload, signature=b"garbage"))  # same content: nothing to trust or to fear
    assert checked == [1]
    assert arch.store.generation == generation  # no write transaction, nobody woken

    # a copy that differs under the same number is checked: a forged one is refused ...
    with pytest.raises(PermissionDenied, match="signature"):
        link._apply(_change(origin, 1, {**payload, "http": "https://evil/data"}, signature=b"garbage"))
    # ... and a signed one is a divergence, shown, while the record stays
    link._apply(_change(origin, 1, {**payload, "http": "https://other/data"}))
    assert "diverged" in arch.divergences["origin"]
    assert arch.store.islands()["origin"][0] == "https://127.0.0.1:9/data"
    assert checked == [1, 1, 1]


def test_the_links_own_origin_moves_its_position_on_an_identical_copy(mesh):
    arch, _, origin = mesh
    direct = PeerLink(arch, "127.0.0.1:3", island="origin")
    change = _change(origin, 1, {"http": "https://127.0.0.1:9/data", "root": ""})
    PeerLink(arch, "127.0.0.1:2", island="relay")._apply(change)  # came first through the relay
    assert direct.last_seq == 0
    direct._apply(change)
    assert direct.last_seq == 1 and direct.target_seq == 1
