"""The archipel command line against a real island, each command in its own process."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from islands import cli, free_port

COMMANDS = [["island"], ["island", "init"], ["island", "serve"], ["datasets"], ["describe"], ["query"],
            ["explain"], ["ingest"], ["publish"], ["delete"], ["peers"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_for_each_command(cmd):
    out = cli(*cmd, "--help").stdout
    assert "usage: archipel" in out


def test_datasets_and_describe(island):
    out = cli("datasets", "--island", island.address).stdout
    assert "sky.order1" in out and "sky.source" in out and "test.allsky" in out
    out = cli("--island", island.address, "datasets", "sky.order1*").stdout
    assert "sky.order1_margin" in out and "sky.source" not in out
    out = cli("describe", "sky.order1", "--partitions", env={"ARCHIPEL_ISLAND": island.address}).stdout
    assert "order 1 pixel 44" in out and "ra: double" in out


def test_query_prints_a_table(island):
    out = cli("query", "SELECT id, ra FROM sky.order1 ORDER BY id LIMIT 3", "--island", island.address).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["id", "ra"] and "(3 rows)" in out
    assert lines[2].split()[0] == "700"


@pytest.mark.parametrize("suffix", ["parquet", "csv", "arrow"])
def test_query_writes_files(island, tmp_path, suffix):
    target = tmp_path / f"out.{suffix}"
    sql = "SELECT source_id, mag, band FROM sky.source WHERE cone(source_ra, source_dec, 315, -60, 5)"
    cli("query", sql, "-o", str(target), "--island", island.address)
    got = {"parquet": pq.read_table, "csv": pcsv.read_csv, "arrow": feather.read_table}[suffix](target)
    with island.client() as c:
        truth = c.sql(sql).read_all()
    assert got.num_rows == truth.num_rows > 0
    assert sorted(got["source_id"].to_pylist()) == sorted(truth["source_id"].to_pylist())
    assert [p.name for p in tmp_path.iterdir()] == [target.name], "no partial file left behind"


def test_explain_shows_pruning(island):
    out = cli("explain", "SELECT * FROM sky.source WHERE cone(source_ra, source_dec, 315, -60, 1)",
              "--island", island.address).stdout
    assert "engine: arrow" in out and "HEALPix partitions can match" in out and "pixels:" in out


def test_ingest_and_publish_commands(island, tmp_path):
    t = pa.table({"ra": [10.0, 20.0, 30.0], "dec": [-5.0, 0.0, 5.0], "v": [1, 2, 3]})
    pq.write_table(t, tmp_path / "a.parquet")
    pcsv.write_csv(t, tmp_path / "b.csv")
    out = cli("ingest", str(tmp_path / "a.parquet"), "--dataset", "cli.ingested", "--island", island.address).stdout
    assert "ingested cli.ingested: catalog, 3 rows" in out
    out = cli("publish", str(tmp_path / "b.csv"), "--dataset", "cli.published", "--ra", "ra", "--dec", "dec",
              "--island", island.address).stdout
    assert "published cli.published: catalog, 3 rows" in out


@pytest.mark.parametrize("args,message", [
    (["query", "SELECT * FROM nowhere.x"], "unknown dataset"),
    (["query", "DROP TABLE sky.order1"], "DROP is refused"),
    (["query", "SELECT * FROM sky.order1", "-o", "/tmp/x.xlsx"], "unknown format"),
    (["describe", "../etc/passwd"], "invalid dataset name"),
    (["ingest", "/nonexistent/path", "--dataset", "x.y"], "does not exist"),
    (["publish", "/nonexistent.parquet", "--dataset", "x.y"], "does not exist"),
])
def test_errors_exit_nonzero_with_one_line(island, args, message):
    proc = cli(*args, "--island", island.address, check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], proc.stderr


def test_unreachable_island(tmp_path):
    proc = cli("datasets", "--island", f"127.0.0.1:{free_port()}", check=False)
    assert proc.returncode == 1 and "unavailable" in proc.stderr and proc.stderr.count("\n") == 1
