"""What a Spark session may ask for: every Spark Connect request is checked here before Spark
sees it, and the archipelago's dataset names in it are pointed at the session's own views.

Pure: a request message and a resolver in, the same message (rewritten in place) and what it
touches out. The rules, in the order a reader meets them:

- **Data by name only.** ``spark.table("gaia.source")`` and ``SELECT ... FROM gaia.source``
  read datasets the caller may read (the resolver decides and names the view); reading files
  by path (``spark.read.parquet("/etc")``, ``parquet.`...```), other sources (JDBC, Python data
  sources without the compute right), other catalogs and global views are refused.
- **Nothing written.** DataFrame writes, streaming, ``INSERT``/``CREATE TABLE``/``DROP``, catalog
  changes and checkpoints are refused; a session's own temporary views and cached DataFrames
  are allowed (they live and die with the session).
- **No server settings.** Only ``spark.sql.*`` settings of the session itself may be set, some
  of which (catalog plugins, extensions, the warehouse) are refused too.
- **Code needs a right.** Python UDFs, UDTFs, ``mapInPandas`` and friends, and Python files
  sent as artifacts need ``compute``; JVM code (Scala/Java UDFs, jars, class files) and
  ``reflect``/``java_method`` are refused to everyone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from archipel.errors import InvalidArgument, PermissionDenied

__all__ = ["Checked", "Guard", "view_name", "split_identifier", "VIEW_PREFIX"]

VIEW_PREFIX = "archipel_ds_"

# (message type, field) of what is refused whatever the caller's rights, with why.
_REFUSED_MESSAGES = {
    "spark.connect.Read.DataSource": "reading files or external sources by path is not allowed in a session; "
                                     "read the archipelago's datasets by name: spark.table('namespace.name')",
    "spark.connect.WriteOperation": "writing from a session is not allowed; publish results with "
                                    "archipel's client (client.publish) or a batch job",
    "spark.connect.WriteOperationV2": "writing tables from a session is not allowed; publish results with "
                                      "archipel's client (client.publish)",
    "spark.connect.WriteStreamOperationStart": "streaming queries are not allowed in a session",
    "spark.connect.StreamingQueryCommand": "streaming queries are not allowed in a session",
    "spark.connect.StreamingQueryManagerCommand": "streaming queries are not allowed in a session",
    "spark.connect.StreamingQueryListenerBusCommand": "streaming queries are not allowed in a session",
    "spark.connect.MergeIntoTableCommand": "MERGE INTO writes a table: not allowed in a session",
    "spark.connect.CheckpointCommand": "checkpoints write to the island's disk: not allowed in a session "
                                       "(cache the DataFrame instead)",
    "spark.connect.CreateResourceProfileCommand": "resource profiles are the island operator's",
    "spark.connect.ExecuteExternalCommand": "external commands are not allowed in a session",
    "spark.connect.PipelineCommand": "declarative pipelines are not allowed in a session",
    "spark.connect.JavaUDF": "JVM functions (Java UDFs) are not allowed in a session: use a Python UDF",
    "spark.connect.ScalarScalaUDF": "JVM functions (Scala UDFs) are not allowed in a session: use a Python UDF",
    "spark.connect.TypedAggregateExpression": "JVM aggregators are not allowed in a session",
    "google.protobuf.Any": "Spark Connect extensions are not allowed in a session",
}
# Messages that run the caller's Python code on the island.
_COMPUTE_MESSAGES = {
    "spark.connect.PythonUDF": "Python UDFs",
    "spark.connect.PythonUDTF": "Python table functions",
    "spark.connect.PythonDataSource": "Python data sources",
}
_REFUSED_FUNCTIONS = {"reflect", "java_method", "try_reflect", "input_file_name", "input_file_block_start",
                      "input_file_block_length"}
_TABLE_FUNCTIONS = {"range", "explode", "explode_outer", "inline", "inline_outer", "json_tuple", "posexplode",
                    "posexplode_outer", "stack", "variant_explode", "variant_explode_outer"}
# Catalog calls: read-only ones pass; those naming a table are resolved; the rest change shared state.
_CATALOG_READ = {"current_database", "list_databases", "list_functions", "get_function", "function_exists",
                 "database_exists", "get_database", "current_catalog", "list_catalogs", "list_tables", "list_views"}
_CATALOG_NAMED = {"list_columns", "get_table", "table_exists", "is_cached", "cache_table", "uncache_table",
                  "drop_temp_view", "set_current_database"}
_MLCOMMANDS_REFUSED = {"write": "saving a model writes to the island's disk: not allowed in a session",
                       "read": "loading a model by path is not allowed in a session"}
_CONFIG_REFUSED_PREFIXES = ("spark.sql.catalog", "spark.sql.extensions", "spark.sql.warehouse", "spark.sql.hive",
                            "spark.sql.streaming", "spark.sql.artifact", "spark.sql.sources", "spark.sql.legacy",
                            "spark.sql.execution.pyspark.udf.faulthandler", "spark.sql.session.localRelation")
_SECRET_WORDS = ("token", "secret", "password", "credential", "key")
_ARTIFACT_KINDS = {"cache/": "", "pyfiles/": "compute", "archives/": "compute", "files/": "compute",
                   "jars/": "refused", "classes/": "refused", "forward_to_fs/": "refused"}
_SQL_FORMATS = {"parquet", "csv", "json", "orc", "text", "avro", "binaryfile", "delta", "jdbc", "xml", "hive",
                "iceberg", "file", "noop", "libsvm", "image"}
_SQL_KEYWORDS = {"SELECT", "WITH", "VALUES", "DESCRIBE", "DESC", "CREATE", "TABLE", "FROM"}
_SQL_QUERIES = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)


def view_name(dataset: str) -> str:
    """The session view a dataset name is rewritten to (one per name, collision-free)."""
    digest = hashlib.sha1(dataset.encode()).hexdigest()[:8]
    return f"{VIEW_PREFIX}{dataset.replace('.', '_')}_{digest}"


def split_identifier(text: str) -> list[str]:
    """A Spark multi-part identifier (``a.b``, ```a`.`b.c```) split into its parts."""
    parts, cur, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "`":
            if quoted and i + 1 < len(text) and text[i + 1] == "`":
                cur.append("`")
                i += 2
                continue
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if quoted:
        raise InvalidArgument(f"unbalanced backquote in the name {text!r}")
    parts.append("".join(cur).strip())
    if any(not p for p in parts):
        raise InvalidArgument(f"{text!r} is not a table name")
    return parts


@dataclass
class Checked:
    """What a checked request touches: the datasets it reads, the code it runs, and the
    DataFrames it persists (for the session's memory account)."""

    datasets: set[str] = field(default_factory=set)
    compute: list[str] = field(default_factory=list)  # what needs the compute right, for the message

    def require(self, has_compute: bool) -> None:
        if self.compute and not has_compute:
            raise PermissionDenied(f"{', '.join(sorted(set(self.compute)))} run your code on the island and need "
                                   f"the 'compute' right (an admin gives it: archipel tokens create --user NAME "
                                   f"--right compute)")


Resolver = Callable[[str], "str | None"]  # dataset name -> view name; None: not a dataset


class Guard:
    """Checks and rewrites one request. ``resolve(name)`` answers for a dotted name: the view it
    becomes when it is a dataset the caller may read, None when no dataset has that name; it
    raises (PermissionDenied) when the caller may not read it."""

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        self.checked = Checked()

    # -- entry points ---------------------------------------------------------------------
    def execute(self, request) -> Checked:
        self._walk(request.plan)
        return self.checked

    def analyze(self, request) -> Checked:
        kind = request.WhichOneof("analyze")
        if kind == "input_files":
            raise PermissionDenied("input_files() would show the island's file paths: not allowed in a session")
        self._walk(getattr(request, kind)) if kind else None
        return self.checked

    def config(self, request) -> None:
        op = request.operation
        kind = op.WhichOneof("op_type")
        if kind == "set":
            for pair in op.set.pairs:
                self._settable(pair.key)
        elif kind == "unset":
            for key in op.unset.keys:
                self._settable(key)
        elif kind in ("get", "get_with_default", "get_option", "is_modifiable"):
            msg = getattr(op, kind)
            keys = list(getattr(msg, "keys", [])) or [p.key for p in getattr(msg, "pairs", [])]
            for key in keys:
                if any(w in key.lower() for w in _SECRET_WORDS):
                    raise PermissionDenied(f"the setting {key!r} is not readable in a session")
        elif kind == "get_all":
            prefix = op.get_all.prefix if op.get_all.HasField("prefix") else ""
            if not prefix.startswith("spark.sql."):
                raise PermissionDenied("only spark.sql.* settings can be listed in a session "
                                       "(spark.conf.getAll with prefix='spark.sql.')")

    def artifact(self, name: str) -> None:
        kind = next((v for k, v in _ARTIFACT_KINDS.items() if name.startswith(k)), "refused")
        if kind == "refused":
            raise PermissionDenied(f"the artifact {name!r} would load JVM code or write files on the island: "
                                   f"not allowed in a session (Python files need the compute right)")
        if kind == "compute":
            self.checked.compute.append("Python files sent to the island")

    # -- settings -------------------------------------------------------------------------
    @staticmethod
    def _settable(key: str) -> None:
        low = key.lower()
        if not low.startswith("spark.sql.") or low.startswith(_CONFIG_REFUSED_PREFIXES) \
                or any(w in low for w in _SECRET_WORDS):
            raise PermissionDenied(f"setting {key!r} is not allowed in a session: only the session's own "
                                   f"spark.sql.* settings (not catalogs, extensions, sources or the warehouse) "
                                   f"can be set; the island's server configuration is the operator's")

    # -- the plan -------------------------------------------------------------------------
    def _walk(self, msg) -> None:
        name = msg.DESCRIPTOR.full_name
        if name in _REFUSED_MESSAGES:
            raise PermissionDenied(_REFUSED_MESSAGES[name])
        if name in _COMPUTE_MESSAGES:
            self.checked.compute.append(_COMPUTE_MESSAGES[name])
        handler = _HANDLERS.get(name)
        if handler is not None and handler(self, msg) is False:
            return  # handled whole
        for fd, value in msg.ListFields():
            if fd.message_type is None:
                continue
            if fd.is_repeated:
                if fd.message_type.GetOptions().map_entry:
                    for v in value.values():
                        if hasattr(v, "DESCRIPTOR"):
                            self._walk(v)
                    continue
                for v in value:
                    self._walk(v)
            else:
                self._walk(value)

    def _named_table(self, msg):
        msg.unparsed_identifier = self._table(msg.unparsed_identifier)
        return False

    def _table(self, identifier: str) -> str:
        parts = split_identifier(identifier)
        dotted = ".".join(parts)
        view = self.resolve(dotted)
        if view is not None:
            self.checked.datasets.add(dotted)
            return f"`{view}`"
        if len(parts) == 1:
            return identifier  # the session's own temporary view
        if parts[0].lower() in _SQL_FORMATS:
            raise PermissionDenied(f"{identifier!r} reads files by path: not allowed in a session; read the "
                                   f"archipelago's datasets by name")
        raise InvalidArgument(f"no dataset named {dotted!r} in the archipelago (a session reads datasets by their "
                              f"names and its own temporary views)")

    def _function(self, msg):
        fname = msg.function_name.lower()
        if fname in _REFUSED_FUNCTIONS:
            raise PermissionDenied(f"{fname}() is not allowed in a session")

    def _table_function(self, msg):
        fname = msg.function_name.lower()
        if fname not in _TABLE_FUNCTIONS:
            raise PermissionDenied(f"the table function {fname}() is not allowed in a session "
                                   f"(allowed: {', '.join(sorted(_TABLE_FUNCTIONS))})")

    def _sql(self, msg):
        field_name = "query" if msg.DESCRIPTOR.full_name == "spark.connect.SQL" else "sql"
        text = getattr(msg, field_name)
        if text:
            setattr(msg, field_name, self.sql(text))

    def _expression_string(self, msg):
        msg.expression = self.sql_expression(msg.expression)
        return False

    def _view_command(self, msg):
        if msg.is_global:
            raise PermissionDenied("global temporary views are shared by every session of the island: "
                                   "create a (session) temporary view instead")
        if msg.name.lower().startswith(VIEW_PREFIX):
            raise InvalidArgument(f"view names starting with {VIEW_PREFIX!r} are the island's")

    def _catalog(self, msg):
        kind = msg.WhichOneof("cat_type")
        if kind in _CATALOG_READ:
            return False
        if kind not in _CATALOG_NAMED:
            raise PermissionDenied(f"catalog.{kind} changes the island's shared catalog or cache: not allowed in "
                                   f"a session")
        op = getattr(msg, kind)
        for fname in ("table_name", "view_name", "db_name"):
            if op.DESCRIPTOR.fields_by_name.get(fname) is not None and getattr(op, fname):
                if kind == "set_current_database":
                    raise PermissionDenied("catalog.setCurrentDatabase is not allowed in a session")
                new = self._table(getattr(op, fname))
                if kind in ("cache_table", "uncache_table", "drop_temp_view") and new != getattr(op, fname):
                    raise PermissionDenied(f"catalog.{kind} of a dataset is the island's: "
                                           f"`archipel cache-table` keeps datasets in memory for every session")
                setattr(op, fname, new.strip("`") if kind != "list_columns" else new)
        return False

    def _ml(self, msg):
        kind = msg.WhichOneof("command")
        if kind in _MLCOMMANDS_REFUSED:
            raise PermissionDenied(_MLCOMMANDS_REFUSED[kind])

    # -- SQL text ---------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        """A SQL statement checked (queries and temporary views only) with dataset names
        rewritten; the text unchanged when it names no dataset."""
        first = re.match(r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*\(*\s*([A-Za-z]+)", text, re.S)
        keyword = first.group(1).upper() if first else ""
        if keyword not in _SQL_KEYWORDS:
            raise PermissionDenied(f"only queries (SELECT, WITH, VALUES, DESCRIBE) and temporary views are allowed "
                                   f"in a session, not {keyword or text[:30]!r}")
        try:
            statements = [s for s in sqlglot.parse(text, read="spark") if s is not None]
        except (ParseError, sqlglot.errors.TokenError) as exc:
            raise InvalidArgument(f"the SQL could not be read: {str(exc).splitlines()[0][:300]}") from None
        except RecursionError:
            raise InvalidArgument("the SQL is nested too deeply") from None
        if len(statements) != 1:
            raise InvalidArgument("one SQL statement at a time")
        stmt = statements[0]
        body = stmt
        if isinstance(stmt, exp.Create):
            props = stmt.args.get("properties")
            temporary = props is not None and any(isinstance(p, exp.TemporaryProperty) for p in props.expressions)
            glob = props is not None and any("GLOBAL" in p.sql().upper() for p in props.expressions)
            if str(stmt.args.get("kind", "")).upper() != "VIEW" or not temporary or glob:
                raise PermissionDenied("CREATE is allowed in a session only for a temporary view "
                                       "(CREATE TEMPORARY VIEW name AS SELECT ...)")
            name = stmt.this.name if isinstance(stmt.this, exp.Table) else stmt.this.this.name
            if name.lower().startswith(VIEW_PREFIX):
                raise InvalidArgument(f"view names starting with {VIEW_PREFIX!r} are the island's")
            body = stmt.expression
        elif isinstance(stmt, exp.Describe):
            body = stmt
        elif not isinstance(stmt, _SQL_QUERIES):
            raise PermissionDenied(f"only queries (SELECT, WITH, VALUES, DESCRIBE) and temporary views are allowed "
                                   f"in a session, not {stmt.key.upper()}")
        return text if not self._check_tree(body) else stmt.sql(dialect="spark")

    def sql_expression(self, text: str) -> str:
        try:
            node = sqlglot.parse_one(f"SELECT {text}", read="spark")
        except (ParseError, sqlglot.errors.TokenError) as exc:
            raise InvalidArgument(f"the expression could not be read: {str(exc).splitlines()[0][:300]}") from None
        except RecursionError:
            raise InvalidArgument("the expression is nested too deeply") from None
        if not isinstance(node, exp.Select) or len(node.expressions) != 1:
            raise InvalidArgument(f"{text[:100]!r} is not one expression")
        if not self._check_tree(node):
            return text
        return node.expressions[0].sql(dialect="spark")

    def _check_tree(self, tree: exp.Expression) -> bool:
        """Checks every table and function of ``tree``; rewrites dataset names. True if changed."""
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        changed = False
        for node in list(tree.walk()):
            if isinstance(node, (exp.Anonymous, exp.Func)):
                fname = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
                if fname in _REFUSED_FUNCTIONS:
                    raise PermissionDenied(f"{fname}() is not allowed in a session")
            if isinstance(node, (exp.Insert, exp.Delete, exp.Update, exp.Merge, exp.Drop, exp.Alter, exp.Command,
                                 exp.Set, exp.Cache, exp.Uncache, exp.Use)):
                raise PermissionDenied(f"{node.key.upper()} is not allowed in a session")
            if not isinstance(node, exp.Table):
                continue
            if isinstance(node.this, (exp.Anonymous, exp.Func)):  # a table function: FROM range(10)
                fname = (node.this.name if isinstance(node.this, exp.Anonymous) else node.this.sql_name()).lower()
                if fname not in _TABLE_FUNCTIONS:
                    raise PermissionDenied(f"the table function {fname}() is not allowed in a session")
                continue
            parts = [p.name for p in node.parts]
            if not parts or not all(parts):
                raise InvalidArgument(f"{node.sql()!r} is not a table name")
            if len(parts) == 1 and parts[0].lower() in ctes:
                continue
            dotted = ".".join(parts)
            view = self.resolve(dotted)
            if view is not None:
                self.checked.datasets.add(dotted)
                alias = node.alias or parts[-1]
                new = exp.Table(this=exp.to_identifier(view, quoted=True))
                if not isinstance(node.parent, exp.Describe):
                    new.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
                node.replace(new)
                changed = True
            elif len(parts) > 1:
                if parts[0].lower() in _SQL_FORMATS or node.this.quoted and "/" in parts[-1]:
                    raise PermissionDenied(f"{node.sql(dialect='spark')} reads files by path: not allowed in a "
                                           f"session; read the archipelago's datasets by name")
                raise InvalidArgument(f"no dataset named {dotted!r} in the archipelago (a session reads datasets "
                                      f"by their names and its own temporary views)")
        return changed


_HANDLERS: dict[str, Callable] = {
    "spark.connect.Read.NamedTable": Guard._named_table,
    "spark.connect.Expression.UnresolvedFunction": Guard._function,
    "spark.connect.CallFunction": Guard._function,
    "spark.connect.UnresolvedTableValuedFunction": Guard._table_function,
    "spark.connect.SQL": Guard._sql,
    "spark.connect.SqlCommand": Guard._sql,
    "spark.connect.Expression.ExpressionString": Guard._expression_string,
    "spark.connect.CreateDataFrameViewCommand": Guard._view_command,
    "spark.connect.Catalog": Guard._catalog,
    "spark.connect.MlCommand": Guard._ml,
}
