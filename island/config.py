"""An island's configuration: ``DIR/archipel.toml`` loaded into dataclasses.

Defaults are written once, here. Environment variables ``ARCHIPEL_<SECTION>_<KEY>`` override
the file (``ARCHIPEL_QUERY_MAX_ROWS=1000``). Unknown sections or keys and values of the wrong
type are refused with a message naming the file, the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archipel.errors import InvalidArgument
from archipel.names import check_dataset_name

__all__ = ["IslandConfig", "IslandSection", "SparkSection", "QuerySection", "IngestSection", "FederationSection", "ReplicationSection",
           "SecuritySection", "LimitsSection",
           "CONFIG_FILE", "load_config", "write_config", "toml_value", "DEFAULT_PORT"]

CONFIG_FILE = "archipel.toml"
DEFAULT_PORT = 7770


@dataclass
class IslandSection:
    name: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    http_port: int = 0  # the web face (page, HTTP API, TAP, HATS); 0: any free port, kept
    # The bulk data port: partition files over HTTPS with Range requests, read by other
    # islands' workers and by clients' direct reads; 0: any free port, kept and advertised.
    data_port: int = 0
    # The island-to-island port (mutual TLS: only islands of the archipelago's CA get in);
    # 0: the client port + 1.
    peer_port: int = 0
    data_dir: str = "data"
    # Short-circuit local reads: a client on this host takes direct reads' file descriptors
    # from an abstract Unix socket of the island's network namespace instead of the data port.
    local_reads: bool = True


@dataclass
class SparkSection:
    # "local[N]" by default; "spark://host:port" for a standalone cluster.
    master: str = "local[2]"
    driver_memory: str = "2g"
    executor_memory: str = "1g"
    start: bool = True  # start the session in the background when the island starts
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class QuerySection:
    timeout_seconds: float = 600.0
    max_rows: int = 0  # 0: no limit
    max_bytes: int = 0  # 0: no limit
    chunk_bytes: int = 3 * 1024 * 1024
    # Aggregates over more than this many bytes of input go to Spark, smaller ones stay on Arrow.
    arrow_max_aggregate_bytes: int = 2 * 1024**3
    workers: int = 16  # concurrent RPCs
    # Memory the Arrow path's DuckDB may use for one island (0: DuckDB's default, 80% of RAM);
    # a query that needs more fails with a message instead of taking the machine.
    memory_bytes: int = 4 * 1024**3


@dataclass
class IngestSection:
    # Rows per HEALPix partition when partitioning plain Parquet into HATS.
    partition_rows: int = 500_000
    max_order: int = 10
    # Folders the Ingest RPC may read from; empty: any path the island's user can read.
    allowed_roots: list[str] = field(default_factory=list)


@dataclass
class FederationSection:
    # HOST:PORT of islands to join at start; more are learned from their introductions.
    peers: list[str] = field(default_factory=list)
    # Islands followed at most through introductions (0: every island heard of). Islands
    # configured here or added with `archipel peers add` are always followed; the others
    # reach this island through the ones it follows (changes are relayed).
    max_peers: int = 0


@dataclass
class ReplicationSection:
    # "" runs Celery on an embedded transport (files under DIR/queue, no server needed);
    # "redis://HOST:PORT/DB" uses Redis.
    broker: str = ""
    workers: int = 1  # Celery worker processes the island starts (0 with a broker: workers run elsewhere)
    concurrency: int = 4  # transfers per worker process (threads)
    xrootd: str = "auto"  # "auto": serve root:// when the xrootd binary is installed; "on"; "off"
    xrootd_port: int = 0  # 0: any free port, advertised
    xrootd_user: str = "xrootd"  # xrootd refuses to run as root and drops to this user
    protocols: list[str] = field(default_factory=lambda: ["root", "http"])  # preferred first
    retries: int = 3  # attempts per partition, each trying every source in turn
    cache_bytes: int = 10 * 1024**3  # quota of replicas (pinned by rules and cached for queries)
    bandwidth_bytes: int = 0  # per transfer, bytes per second; 0: no limit
    # route='auto' replicates a query's partitions when they are fewer bytes than its result
    # is estimated to be, and at most this many bytes; 0 disables it.
    auto_max_bytes: int = 256 * 1024**2
    block_bytes: int = 2 * 1024**2  # read size of a transfer (replication.transfer.BLOCK_BYTES)
    # fsync each copy before it is renamed into place and recorded (a crash then never leaves
    # a recorded replica with lost bytes); off trades that for speed on slow disks.
    fsync: bool = True
    # Every partition file held here is checked against the catalog's adler32 this often
    # (0: never; files are also checked on their first read after a change of mtime or size).
    verify_seconds: float = 86400.0


@dataclass
class SecuritySection:
    # "none": every call needs a token; "read-public": calls without one may read public datasets.
    anonymous: str = "none"
    ca: str = "ca.pem"  # paths relative to the island folder
    cert: str = "island.pem"
    key: str = "island-key.pem"
    audit: bool = True  # DIR/audit.jsonl: who called what, on which datasets, what went out
    # Benchmarks only: a second client port on 127.0.0.1 without TLS or tokens (every caller
    # there is an admin), to measure what TLS and token checks cost. 0: none (the default).
    benchmark_plaintext_port: int = 0


@dataclass
class LimitsSection:
    """Per-user fair shares; 0: no limit. Admins are held to them too."""

    concurrent_queries: int = 0
    result_bytes: int = 0  # bytes of one query's result
    query_seconds: float = 0.0
    pinned_bytes: int = 0  # bytes of replicas pinned by one user's rules
    subscriptions: int = 0  # open subscription streams
    # What one caller (or a peer island) can make an island hold; these have defaults, so
    # an island is protected without configuration (0: no limit).
    streams: int = 256  # long-lived streams (subscriptions, peers' catalog streams) open at once, in
    #                     threads of their own beside [query] workers: short calls never wait for them
    streams_per_caller: int = 32  # of those, one user's or one island's
    max_columns: int = 4000  # columns of a published or ingested dataset
    max_change_bytes: int = 12 * 1024**2  # one catalog change (followers receive it in one message)
    publish_seconds: float = 3600.0  # a publish or append stream open longer is cut
    publish_bytes: int = 0  # Arrow bytes one publish or append may send (staged on disk)
    publish_message_bytes: int = 256 * 1024**2  # one Arrow message reassembled from fragments (memory)


@dataclass
class SessionsSection:
    """Spark sessions (Spark Connect through the island) and the tables kept in Spark's memory."""

    enabled: bool = True  # needs [spark] start = true
    idle_seconds: float = 1800.0  # a session with no call for this long ends
    max_per_user: int = 4  # open sessions of one user on this island (0: no limit)
    connect_port: int = 0  # the island JVM's internal Spark Connect port on 127.0.0.1 (0: any free)
    cache_bytes: int = 1024**3  # tables kept in Spark's memory by cache-table, at most (least recent dropped)


@dataclass
class JobsSection:
    """Batch jobs (Livy's batches): PySpark scripts run by the island as child processes."""

    user: str = "nobody"  # the unprivileged user jobs run as (when the island runs as root)
    concurrent: int = 2  # jobs running at once on this island; more wait queued
    per_user: int = 2  # jobs one user may have queued or running (0: no limit)
    max_seconds: float = 3600.0  # a job running longer is cancelled
    memory_bytes: int = 4 * 1024**3  # address-space limit of a job's Python process (0: none)
    keep_days: float = 7.0  # finished jobs (their logs) are removed after this long


@dataclass
class IslandConfig:
    island: IslandSection = field(default_factory=IslandSection)
    spark: SparkSection = field(default_factory=SparkSection)
    query: QuerySection = field(default_factory=QuerySection)
    ingest: IngestSection = field(default_factory=IngestSection)
    federation: FederationSection = field(default_factory=FederationSection)
    replication: ReplicationSection = field(default_factory=ReplicationSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    sessions: SessionsSection = field(default_factory=SessionsSection)
    jobs: JobsSection = field(default_factory=JobsSection)
    root: Path = field(default=Path("."), compare=False)

    @property
    def data_path(self) -> Path:
        p = Path(self.island.data_dir)
        return p if p.is_absolute() else self.root / p

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def address(self) -> str:
        return f"{self.island.host}:{self.island.port}"

    @property
    def peer_address(self) -> str:
        return f"{self.island.host}:{self.island.peer_port or self.island.port + 1}"

    def security_path(self, name: str) -> Path:
        p = Path(getattr(self.security, name))
        return p if p.is_absolute() else self.root / p


_SECTIONS = {f.name: f.type for f in dataclasses.fields(IslandConfig) if f.name != "root"}


def _coerce(where: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
            return value.lower() in {"1", "true", "yes"}
        if isinstance(value, bool):
            return value
    elif kind in (int, float):
        # numbers and their text; never a bool, and a float is not taken for an int
        accepted = (int, str) if kind is int else (int, float, str)
        if isinstance(value, accepted) and not isinstance(value, bool):
            try:
                return kind(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is dict:
        if isinstance(value, dict) and all(isinstance(v, (str, int, float, bool)) for v in value.values()):
            return {str(k): str(v) for k, v in value.items()}
    elif kind is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
    raise InvalidArgument(f"{where}: expected {kind.__name__}, got {value!r}")


def _apply(cfg: IslandConfig, data: dict[str, Any], source: str) -> None:
    for section, values in data.items():
        if section not in _SECTIONS:
            raise InvalidArgument(f"{source}: unknown section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(values, dict):
            raise InvalidArgument(f"{source}: [{section}] must be a table of keys")
        target = getattr(cfg, section)
        known = {f.name: f for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in known:
                raise InvalidArgument(
                    f"{source}: unknown key {key!r} in [{section}] (known: {', '.join(known)})"
                )
            setattr(target, key, _coerce(f"{source}: [{section}] {key}", value, getattr(target, key)))


def _validate(cfg: IslandConfig, source: str) -> None:
    name = cfg.island.name
    if not name:
        raise InvalidArgument(f"{source}: [island] name is required")
    try:
        check_dataset_name(name)
        if "." in name:
            raise InvalidArgument("dots are not allowed")
    except InvalidArgument as exc:
        raise InvalidArgument(f"{source}: [island] name {name!r} is not a valid island name ({exc})") from None
    if cfg.security.benchmark_plaintext_port and cfg.island.host != "127.0.0.1":
        raise InvalidArgument(f"{source}: [security] benchmark_plaintext_port is for benchmarks on 127.0.0.1 only")
    if not 0 <= cfg.security.benchmark_plaintext_port <= 65535:
        raise InvalidArgument(f"{source}: [security] benchmark_plaintext_port is not a valid TCP port")
    for key in ("port", "http_port", "peer_port", "data_port"):
        port = getattr(cfg.island, key)
        if not 0 <= port <= 65535 or (key == "port" and port == 0):
            raise InvalidArgument(f"{source}: [island] {key} {port} is not a valid TCP port")
    for key in ("max_rows", "max_bytes", "chunk_bytes", "workers", "memory_bytes"):
        if getattr(cfg.query, key) < 0:
            raise InvalidArgument(f"{source}: [query] {key} must not be negative")
    if cfg.query.chunk_bytes < 1024:
        raise InvalidArgument(f"{source}: [query] chunk_bytes must be at least 1024")
    if cfg.query.timeout_seconds <= 0:
        raise InvalidArgument(f"{source}: [query] timeout_seconds must be positive")
    if cfg.island.peer_port and cfg.island.peer_port in (cfg.island.port, cfg.island.http_port):
        raise InvalidArgument(f"{source}: [island] peer_port {cfg.island.peer_port} is used by another port")
    if cfg.island.data_port and cfg.island.data_port in (cfg.island.port, cfg.island.http_port, cfg.island.peer_port):
        raise InvalidArgument(f"{source}: [island] data_port {cfg.island.data_port} is used by another port")
    if cfg.security.anonymous not in ("none", "read-public"):
        raise InvalidArgument(f"{source}: [security] anonymous must be \"none\" or \"read-public\", "
                              f"not {cfg.security.anonymous!r}")
    for key in ("concurrent_queries", "result_bytes", "query_seconds", "pinned_bytes", "subscriptions", "streams",
                "streams_per_caller", "max_columns", "max_change_bytes", "publish_seconds", "publish_bytes",
                "publish_message_bytes"):
        if getattr(cfg.limits, key) < 0:
            raise InvalidArgument(f"{source}: [limits] {key} must not be negative (0: no limit)")
    if not 0 < cfg.limits.max_change_bytes <= 15 * 1024**2:
        raise InvalidArgument(f"{source}: [limits] max_change_bytes must be between 1 and 15 MiB (a change travels "
                              f"to peers in one message of at most 16 MiB)")
    if cfg.federation.max_peers < 0:
        raise InvalidArgument(f"{source}: [federation] max_peers must not be negative")
    for peer in cfg.federation.peers:
        host, _, port = peer.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"{source}: [federation] peers: {peer!r} is not HOST:PORT")
    r = cfg.replication
    if r.broker and not r.broker.startswith(("redis://", "rediss://")):
        raise InvalidArgument(f"{source}: [replication] broker must be empty (embedded) or redis://HOST:PORT/DB, "
                              f"not {r.broker!r}")
    if r.xrootd not in ("auto", "on", "off"):
        raise InvalidArgument(f"{source}: [replication] xrootd must be auto, on or off, not {r.xrootd!r}")
    if not 0 <= r.xrootd_port <= 65535:
        raise InvalidArgument(f"{source}: [replication] xrootd_port {r.xrootd_port} is not a valid TCP port")
    bad = [p for p in r.protocols if p not in ("root", "http")]
    if bad or not r.protocols:
        raise InvalidArgument(f"{source}: [replication] protocols must list root and/or http, not {r.protocols!r}")
    for key in ("workers", "concurrency", "retries", "block_bytes"):
        if key == "workers" and r.broker and r.workers == 0:
            continue  # a Redis broker: the workers may all run elsewhere
        if getattr(r, key) < 1:
            raise InvalidArgument(f"{source}: [replication] {key} must be at least 1"
                                  + (" (0 only with a broker: workers started elsewhere)" if key == "workers" else ""))
    for key in ("cache_bytes", "bandwidth_bytes", "auto_max_bytes", "verify_seconds"):
        if getattr(r, key) < 0:
            raise InvalidArgument(f"{source}: [replication] {key} must not be negative")
    se, jb = cfg.sessions, cfg.jobs
    if se.idle_seconds <= 0 or se.max_per_user < 0 or se.cache_bytes < 0:
        raise InvalidArgument(f"{source}: [sessions] idle_seconds must be positive, max_per_user and cache_bytes "
                              f"not negative")
    if not 0 <= se.connect_port <= 65535:
        raise InvalidArgument(f"{source}: [sessions] connect_port {se.connect_port} is not a valid TCP port")
    if jb.concurrent < 1 or jb.per_user < 0 or jb.max_seconds <= 0 or jb.memory_bytes < 0 or jb.keep_days <= 0:
        raise InvalidArgument(f"{source}: [jobs] concurrent must be at least 1, max_seconds and keep_days positive, "
                              f"per_user and memory_bytes not negative")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", jb.user):
        raise InvalidArgument(f"{source}: [jobs] user {jb.user!r} is not a user name")
    if cfg.ingest.partition_rows < 1 or not 0 <= cfg.ingest.max_order <= 19:
        raise InvalidArgument(f"{source}: [ingest] partition_rows must be >= 1 and max_order in 0..19")


def load_config(island_dir: str | Path, environ: dict[str, str] | None = None) -> IslandConfig:
    """Reads DIR/archipel.toml, then the ARCHIPEL_<SECTION>_<KEY> overrides; raises InvalidArgument."""
    root = Path(island_dir).resolve()
    path = root / CONFIG_FILE
    if not path.is_file():
        raise InvalidArgument(f"{path} not found: create it with `archipel island init {island_dir} --name NAME`")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: not valid TOML: {exc}") from None
    cfg = IslandConfig(root=root)
    _apply(cfg, data, str(path))
    env = os.environ if environ is None else environ
    overrides: dict[str, dict[str, str]] = {}
    for var, value in env.items():
        if not var.startswith("ARCHIPEL_"):
            continue
        rest = var[len("ARCHIPEL_"):].lower()
        section, _, key = rest.partition("_")
        if section in _SECTIONS and key:
            overrides.setdefault(section, {})[key] = value
    _apply(cfg, overrides, "environment")
    _validate(cfg, str(path))
    return cfg


def toml_value(v: Any) -> str:
    """A value written as TOML (strings quoted, lists and inline tables)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def write_config(cfg: IslandConfig) -> Path:
    """Writes the config (every key, defaults included, so operators see what they can set)."""
    _validate(cfg, "island init")
    cfg.root.mkdir(parents=True, exist_ok=True)
    path = cfg.root / CONFIG_FILE
    if path.exists():
        raise InvalidArgument(f"{path} already exists; edit it instead")
    lines = ["# Archipel island configuration; see docs/operator.md for every key."]
    for section in _SECTIONS:
        lines.append(f"\n[{section}]")
        for f in dataclasses.fields(getattr(cfg, section)):
            lines.append(f"{f.name} = {toml_value(getattr(getattr(cfg, section), f.name))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
