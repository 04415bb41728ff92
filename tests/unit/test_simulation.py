from federation.simulation import mesh, simulate, sparse


def test_every_island_applies_the_change_once():
    for followers, name in ((mesh(30), "mesh"), (sparse(30, 3), "sparse")):
        r = simulate(followers, name)
        assert r.islands == 30
        # every delivery is either the one application at an island or a dropped duplicate
        assert r.messages - r.duplicates == 29


def test_mesh_is_one_hop_and_sparse_relays():
    assert simulate(mesh(20), "mesh").max_hops == 1
    assert simulate(sparse(100, 3), "sparse").max_hops > 1
