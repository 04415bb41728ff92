"""The pure parts of sessions: the guard over Spark Connect requests, where a session runs,
and the book of sessions (no Spark, no sockets)."""

from __future__ import annotations

import pytest

from archipel.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from federation.router import place_session
from island.sessions.book import SessionBook
from island.sessions.guard import Guard, split_identifier, view_name
from metacatalog.access import Caller

import pyspark.sql.connect.proto as pb  # noqa: E402  (the island extra always has it)

DATASETS = {"gaia.source", "ztf.obj"}


def resolver(secret: set[str] = frozenset()):
    def resolve(name: str):
        if name not in DATASETS | set(secret):
            return None
        if name in secret:
            raise PermissionDenied(f"you may not read {name}")
        return view_name(name)
    return resolve


def execute(relation=None, command=None) -> pb.ExecutePlanRequest:
    plan = pb.Plan(root=relation) if relation is not None else pb.Plan(command=command)
    return pb.ExecutePlanRequest(session_id="6f1c1c1e-8a51-4c3f-9d1e-3f4f5a6b7c8d", plan=plan)


def named(name: str) -> pb.Relation:
    return pb.Relation(read=pb.Read(named_table=pb.Read.NamedTable(unparsed_identifier=name)))


def test_dataset_names_become_the_sessions_views_in_tables_sql_and_expressions():
    req = execute(pb.Relation(filter=pb.Filter(
        input=named("gaia.source"),
        condition=pb.Expression(expression_string=pb.Expression.ExpressionString(
            expression="ra > (SELECT max(ra) FROM ztf.obj)")))))
    checked = Guard(resolver()).execute(req)
    assert checked.datasets == DATASETS
    assert req.plan.root.filter.input.read.named_table.unparsed_identifier == f"`{view_name('gaia.source')}`"
    assert view_name("ztf.obj") in req.plan.root.filter.condition.expression_string.expression
    sql = execute(command=pb.Command(sql_command=pb.SqlCommand(sql="SELECT g.ra FROM gaia.source g")))
    Guard(resolver()).execute(sql)
    assert view_name("gaia.source") in sql.plan.command.sql_command.sql and "AS `g`" in sql.plan.command.sql_command.sql
    untouched = "SELECT id FROM mine WHERE id > 1"
    assert Guard(resolver()).sql(untouched) == untouched  # the session's own view, text unchanged


@pytest.mark.parametrize("relation, message", [
    (pb.Relation(read=pb.Read(data_source=pb.Read.DataSource(format="parquet", paths=["/etc"]))), "by path"),
    (named("parquet.`/etc`"), "by path"),
    (named("global_temp.shared"), "no dataset"),
    (named("spark_catalog.default.t"), "no dataset"),
    (pb.Relation(sql=pb.SQL(query="SELECT * FROM csv.`/etc/passwd`")), "by path"),
    (pb.Relation(sql=pb.SQL(query="SELECT reflect('java.lang.System', 'exit', 1)")), "reflect"),
    (pb.Relation(sql=pb.SQL(query="INSERT INTO t SELECT 1")), "only queries"),
    (pb.Relation(sql=pb.SQL(query="SET spark.sql.warehouse.dir=/tmp")), "only queries"),
    (pb.Relation(sql=pb.SQL(query="ADD JAR /tmp/evil.jar")), "only queries"),
    (pb.Relation(sql=pb.SQL(query="CREATE GLOBAL TEMPORARY VIEW v AS SELECT 1")), "temporary view"),
    (pb.Relation(sql=pb.SQL(query="SELECT * FROM read_files('/etc')")), "table function"),
    (pb.Relation(catalog=pb.Catalog(clear_cache=pb.ClearCache())), "shared"),
    (pb.Relation(catalog=pb.Catalog(create_table=pb.CreateTable(table_name="t", path="/tmp"))), "shared"),
    (pb.Relation(project=pb.Project(input=named("gaia.source"), expressions=[pb.Expression(
        unresolved_function=pb.Expression.UnresolvedFunction(function_name="java_method"))])), "java_method"),
])
def test_escapes_are_refused_with_a_message(relation, message):
    with pytest.raises((PermissionDenied, InvalidArgument), match=message):
        Guard(resolver()).execute(execute(relation))


@pytest.mark.parametrize("command, message", [
    (pb.Command(write_operation=pb.WriteOperation(input=named("gaia.source"), path="/tmp/x")), "writing"),
    (pb.Command(create_dataframe_view=pb.CreateDataFrameViewCommand(input=named("gaia.source"), name="v",
                                                                    is_global=True)), "global"),
    (pb.Command(create_dataframe_view=pb.CreateDataFrameViewCommand(input=named("gaia.source"),
                                                                    name="archipel_ds_x")), "island's"),
    (pb.Command(checkpoint_command=pb.CheckpointCommand(relation=named("gaia.source"))), "checkpoint"),
    (pb.Command(ml_command=pb.MlCommand(write=pb.MlCommand.Write(path="/tmp/model"))), "model"),
])
def test_commands_that_write_or_share_are_refused(command, message):
    with pytest.raises((PermissionDenied, InvalidArgument), match=message):
        Guard(resolver()).execute(execute(command=command))


def test_python_code_needs_the_compute_right_and_jvm_code_is_refused():
    udf = pb.Expression(common_inline_user_defined_function=pb.CommonInlineUserDefinedFunction(
        function_name="f", python_udf=pb.PythonUDF(output_type=pb.DataType(long=pb.DataType.Long()))))
    req = execute(pb.Relation(project=pb.Project(input=named("gaia.source"), expressions=[udf])))
    checked = Guard(resolver()).execute(req)
    with pytest.raises(PermissionDenied, match="compute"):
        checked.require(has_compute=False)
    checked.require(has_compute=True)
    scala = pb.Expression(common_inline_user_defined_function=pb.CommonInlineUserDefinedFunction(
        function_name="f", scalar_scala_udf=pb.ScalarScalaUDF(payload=b"x")))
    with pytest.raises(PermissionDenied, match="JVM"):
        Guard(resolver()).execute(execute(pb.Relation(project=pb.Project(input=named("gaia.source"),
                                                                         expressions=[scala]))))
    g = Guard(resolver())
    g.artifact("cache/abc")
    assert not g.checked.compute
    g.artifact("pyfiles/helpers.py")
    assert g.checked.compute
    with pytest.raises(PermissionDenied, match="JVM"):
        g.artifact("jars/evil.jar")


def test_a_dataset_the_caller_may_not_read_is_refused_by_the_resolver():
    with pytest.raises(PermissionDenied, match="may not read"):
        Guard(resolver({"secret.x"})).execute(execute(named("secret.x")))
    with pytest.raises(PermissionDenied, match="may not read"):
        Guard(resolver({"secret.x"})).sql("SELECT * FROM secret.x")


def test_settings():
    def conf(**op):
        return pb.ConfigRequest(session_id="s", operation=pb.ConfigRequest.Operation(**op))
    set_ = lambda k: conf(set=pb.ConfigRequest.Set(pairs=[pb.KeyValue(key=k, value="1")]))  # noqa: E731
    Guard(resolver()).config(set_("spark.sql.shuffle.partitions"))
    for key in ("spark.master", "spark.sql.catalog.x", "spark.sql.extensions", "spark.connect.authenticate.token",
                "spark.sql.warehouse.dir"):
        with pytest.raises(PermissionDenied, match="not allowed"):
            Guard(resolver()).config(set_(key))
    with pytest.raises(PermissionDenied, match="not readable"):
        Guard(resolver()).config(conf(get=pb.ConfigRequest.Get(keys=["spark.connect.authenticate.token"])))
    with pytest.raises(PermissionDenied, match="spark.sql"):
        Guard(resolver()).config(conf(get_all=pb.ConfigRequest.GetAll()))
    Guard(resolver()).config(conf(get_all=pb.ConfigRequest.GetAll(prefix="spark.sql.")))


def test_identifiers_split_like_sparks():
    assert split_identifier("gaia.source") == ["gaia", "source"]
    assert split_identifier("`a.b`.c") == ["a.b", "c"]
    assert split_identifier("`we``ird`") == ["we`ird"]
    for bad in ("a..b", "`open", ".x"):
        with pytest.raises(InvalidArgument):
            split_identifier(bad)


def test_a_session_runs_where_its_data_is():
    holders = {"a.x": {"alpha"}, "b.y": {"beta"}, "both.z": {"alpha", "beta"}}
    assert place_session([], "alpha", holders, set()).island == "alpha"
    assert place_session(["a.x", "both.z"], "alpha", holders, set()).island == "alpha"
    assert place_session(["b.y"], "alpha", holders, set()).island == "beta"
    assert place_session(["b.y", "both.z"], "alpha", holders, set()).island == "beta"
    assert place_session(["b.y"], "alpha", holders, {"beta"}).island == "alpha"  # beta is down: copied here
    spread = place_session(["a.x", "b.y"], "gamma", holders, set())
    assert spread.island == "alpha" and "copied" in spread.reason


def test_the_book_gives_each_session_to_one_user_and_limits_them():
    book = SessionBook(max_per_user=2)
    ana, bo = Caller(user="ana"), Caller(user="bo")
    sid = "6f1c1c1e-8a51-4c3f-9d1e-3f4f5a6b7c8d"
    s = book.use(ana, sid)
    assert book.use(ana, sid) is s
    with pytest.raises(PermissionDenied, match="another user"):
        book.use(bo, sid)
    book.use(ana, "7f1c1c1e-8a51-4c3f-9d1e-3f4f5a6b7c8d")
    with pytest.raises(ResourceExhausted, match="max_per_user"):
        book.use(ana, "8f1c1c1e-8a51-4c3f-9d1e-3f4f5a6b7c8d")
    with pytest.raises(InvalidArgument, match="UUID"):
        book.use(ana, "../../etc")
    assert [x.user for x in book.sessions(bo)] == []
    book.end(sid)
    with pytest.raises(NotFound, match="ended"):
        book.use(ana, sid)
    assert book.idle(0.0, now=s.last_used + 10) and not book.idle(1e6)
