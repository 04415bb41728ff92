"""Hostile and malformed SQL: refused with a clear message, the island keeps serving, and the
catalog is untouched."""

from __future__ import annotations

import pytest

import archipel

INVALID = [
    ("SELEC * FROM sky.order1", "invalid SQL"),
    ("SELECT * FROM sky.order1 WHERE", "invalid SQL"),
    ("", "empty query"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT nope FROM sky.order1", "nope"),
    ("SELECT * FROM sky.order1 WHERE cone(ra, dec, 1, 2)", "5 arguments"),
    ("SELECT * FROM sky.order1 WHERE cone(ra, dec, 1, 2, -3)", "negative"),
    ("SELECT * FROM sky.order1 WHERE cone(ra, dec, 1, 95, 3)", "outside"),
    ("SELECT 1 AS one", "reads no dataset"),
]

NOT_FOUND = ["SELECT * FROM gaia.nothing", "SELECT * FROM sky.order1 a JOIN no.such b ON a.id = b.id",
             "SELECT * FROM global_temp.x"]

DENIED = [
    "SELECT * FROM parquet.`/etc`",
    "SELECT * FROM parquet.`/etc/passwd`",
    "SELECT * FROM json.`/etc/hosts`",
    "SELECT * FROM text.`file:///etc/passwd`",
    "SELECT * FROM csv.`/work`",
    "INSERT INTO sky.order1 SELECT * FROM sky.order1",
    "DROP TABLE sky.order1",
    "CREATE TABLE x AS SELECT * FROM sky.order1",
    "DELETE FROM sky.order1 WHERE id = 1",
    "UPDATE sky.order1 SET ra = 0",
    "SET spark.sql.warehouse.dir=/tmp",
    "ADD JAR /tmp/evil.jar",
    "CREATE TEMPORARY FUNCTION f AS 'com.evil.F'",
    "CACHE TABLE sky.order1",
    "SELECT reflect('java.lang.Runtime', 'getRuntime') FROM sky.order1",
    "SELECT java_method('java.lang.System', 'exit', 0) FROM sky.order1",
    "SELECT TRANSFORM(id) USING 'cat /etc/passwd' FROM sky.order1",
    "SELECT * FROM range(10)",
    "SELECT input_file_name() FROM sky.order1",
    "SELECT * FROM read_parquet('/etc/passwd')",
]


@pytest.mark.parametrize("sql,message", INVALID)
def test_invalid_sql_is_invalid_argument(client, sql, message):
    with pytest.raises(archipel.InvalidArgument, match=message):
        client.sql(sql).read_all()
    if message != "nope":  # Explain does not resolve columns; the engine does when it runs
        with pytest.raises(archipel.InvalidArgument):
            client.explain(sql)


def test_unknown_column_on_spark_is_invalid_argument(client):
    with pytest.raises(archipel.InvalidArgument, match="nope"):
        client.sql("SELECT a.nope FROM sky.order1 a JOIN sky.source b ON a.id = b.object_id").read_all()


@pytest.mark.parametrize("sql", NOT_FOUND)
def test_unknown_dataset_is_not_found(client, sql):
    with pytest.raises(archipel.NotFound, match="unknown dataset"):
        client.sql(sql).read_all()


@pytest.mark.parametrize("sql", DENIED)
def test_writes_and_file_reads_are_refused(client, sql):
    before = [(d.name, d.num_rows) for d in client.datasets()]
    seq = client.info()["catalog_sequence"]
    with pytest.raises((archipel.PermissionDenied, archipel.NotFound)) as err:
        client.sql(sql).read_all()
    assert str(err.value)
    for engine in ("arrow", "spark"):
        with pytest.raises((archipel.PermissionDenied, archipel.NotFound)):
            client.sql(sql, engine=engine).read_all()
    assert [(d.name, d.num_rows) for d in client.datasets()] == before
    assert client.info()["catalog_sequence"] == seq
    assert client.sql("SELECT count(*) AS n FROM sky.order1").read_all()["n"][0].as_py() == 131


def test_bad_request_fields(client):
    with pytest.raises(archipel.InvalidArgument):
        client.sql("SELECT * FROM sky.order1", route="sideways")
    with pytest.raises(archipel.InvalidArgument):
        client.sql("SELECT * FROM sky.order1", engine="duck")
    with pytest.raises(archipel.InvalidArgument, match="compression"):
        client.sql("SELECT * FROM sky.order1", compression="gzip").read_all()
    with pytest.raises(archipel.InvalidArgument, match="query_id"):
        client.sql("SELECT * FROM sky.order1", query_id="../../x").read_all()
    # route="replicate" over data held here has nothing to copy: it runs here
    assert client.sql("SELECT count(*) AS n FROM sky.order1", route="replicate").read_all()["n"][0].as_py() == 131
    # route="remote" over data held here runs here, and the plan says so
    result = client.sql("SELECT count(*) AS n FROM sky.order1", route="remote")
    assert result.read_all()["n"][0].as_py() == 131 and "held here" in client.explain(
        "SELECT count(*) FROM sky.order1", route="remote").engine_reason + result.plan.engine_reason


def test_huge_and_binary_sql_text(client):
    with pytest.raises(archipel.InvalidArgument):
        client.sql("SELECT " + "1+" * 600_000 + "1 FROM sky.order1").read_all()
    with pytest.raises(archipel.ArchipelError):
        client.sql("SELECT \x00\x01\x02 FROM sky.order1").read_all()
    assert client.info()["name"] == "alpha"
