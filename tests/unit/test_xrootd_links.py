"""The tree of links XRootD exports: kept in step with the replicas recorded, by a full pass
and by updates of what changed; the two agree, and hostile names make no link."""

from __future__ import annotations

from island.xrootd import sync_partition_links, update_replica_links
from metacatalog.store import CatalogStore
from replication.layout import replica_path


def _tree(links):
    return {str(p.relative_to(links)): str(p.readlink()) for p in links.rglob("*") if p.is_symlink()}


def test_updates_agree_with_the_full_pass(tmp_path):
    links, replicas = tmp_path / "links", tmp_path / "replicas"
    store = CatalogStore(tmp_path / "catalog.sqlite", "here")
    pids = [f"Norder=1/Dir=0/Npix={i}.parquet" for i in range(6)]
    held = {("sky.obj", p) for p in pids[:4]} | {("gaia.dr3", pids[0])}
    for d, p in held:
        replica_path(replicas, d, p).parent.mkdir(parents=True, exist_ok=True)
        replica_path(replicas, d, p).write_bytes(b"x")
    with store.transaction() as w:
        for d, p in sorted(held):
            w.execute("INSERT INTO local_files VALUES (?, ?, 1, 1, 0, 0)", (d, p))
    sync_partition_links(store, links, replicas, "here")
    full = _tree(links)
    assert len(full) == 5 and full[f"sky.obj/{pids[0]}"] == str(replica_path(replicas, "sky.obj", pids[0]))

    # Two files land, one goes: the update makes the tree the full pass would.
    added = {("sky.obj", pids[4]), ("sky.obj", pids[5])}
    removed = {("sky.obj", pids[0])}
    with store.transaction() as w:
        for d, p in added:
            w.execute("INSERT INTO local_files VALUES (?, ?, 1, 1, 0, 0)", (d, p))
        w.execute("DELETE FROM local_files WHERE dataset=? AND pid=?", next(iter(removed)))
    assert update_replica_links(links, replicas, added, removed) == 3
    assert update_replica_links(links, replicas, added, removed) == 0  # nothing left to do
    updated = _tree(links)
    sync_partition_links(store, links, replicas, "here")
    assert updated == _tree(links) and len(updated) == 6


def test_hostile_names_make_no_link(tmp_path):
    links, replicas = tmp_path / "links", tmp_path / "replicas"
    (tmp_path / "secret").write_text("no")
    bad = [("sky.obj", "../../secret"), ("../x", "a.parquet"), ("sky.obj", "/etc/passwd"), ("sky.obj", "")]
    assert update_replica_links(links, replicas, bad, bad) == 0
    assert not links.exists() or _tree(links) == {}
    assert (tmp_path / "secret").read_text() == "no"
