"""Commands that make and run islands and their peers: island init, serve, worker; peers."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from archipel.cli.output import act_or_list
from archipel.errors import InvalidArgument

# Top-level modules of the ``island`` extra: missing one means a client-only install.
ISLAND_DEPENDENCIES = {"pyspark", "duckdb", "sqlglot", "cdshealpix", "mocpy", "hats", "astropy", "numpy", "pandas",
                       "cryptography"}

def cmd_island_init(args: argparse.Namespace) -> int:
    from island.config import IslandConfig, IslandSection
    from island.founding import found_island

    cfg = IslandConfig(root=Path(args.dir).resolve())
    cfg.island = IslandSection(name=args.name, host=args.host, port=args.port, http_port=args.http_port,
                               peer_port=args.peer_port or 0, data_port=args.data_port)
    if args.spark_master:
        cfg.spark.master = args.spark_master
    if args.anonymous:
        cfg.security.anonymous = args.anonymous
    cfg.federation.peers = list(args.peer or [])
    done = found_island(cfg, args.ca)
    print(f"wrote {done.config}, the island's certificate (signed by {done.ca_dir / 'ca.pem'}) and {done.admin_token}")
    if done.new_ca:
        print(f"a new archipelago CA is in {done.ca_dir}: other islands join with --ca {done.ca_dir}")
    print(f"start it with: archipel island serve {args.dir}")
    print(f"then: export ARCHIPEL_ISLAND={cfg.address} ARCHIPEL_CA={cfg.root / 'ca.pem'} "
          f"ARCHIPEL_TOKEN=$(cat {done.admin_token})")
    return 0


def cmd_island_worker(args: argparse.Namespace) -> int:
    """Runs one of the island's Celery replication workers in this process (another host of a
    shared filesystem, a systemd unit of its own); with a Redis broker the island may start
    none itself (``[replication] workers = 0``)."""
    from island.config import load_config
    from island.replication import worker_environment

    cfg = load_config(args.dir)
    if args.concurrency is not None and not 1 <= args.concurrency <= 256:
        raise InvalidArgument("--concurrency is 1 to 256")
    env = {**os.environ, **worker_environment(cfg, secure=True)}
    if args.concurrency:
        env["ARCHIPEL_WORKER_THREADS"] = str(args.concurrency)
    name = args.name or f"worker-{os.uname().nodename}@{cfg.island.name}"
    cmd = [sys.executable, "-m", "celery", "-A", "replication.worker", "worker", "--pool", "threads",
           "--concurrency", str(args.concurrency or cfg.replication.concurrency), "--hostname", name,
           "--loglevel", args.log_level.upper(), "--without-heartbeat", "--without-gossip", "--without-mingle"]
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def cmd_island_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "sqlglot", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from island.server import serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ISLAND_DEPENDENCIES:
            raise
        raise InvalidArgument(f"this install has no island parts ({exc}); pip install 'archipel[island]'") from None
    serve(args.dir)
    # Everything the island started is stopped; RPC threads still blocked in a dead JVM call
    # must not hold the process open.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


PEER_ACTIONS = {
    "add": ("add_peer", "address", "peers add needs HOST:PORT",
            lambda p: f"following {p['island']} at {p['address']} ({p['state']})"),
    "remove": ("remove_peer", "address", "peers remove needs HOST:PORT or an island name",
               lambda p: f"no longer following {p['island'] or '?'} at {p['address']}"),
}


def cmd_peers(args: argparse.Namespace) -> int:
    return act_or_list(args, PEER_ACTIONS, lambda c: c.peers(), "no peers",
                       ["island", "address", "state", "last seq", "error"],
                       lambda p: [p["island"], p["address"], p["state"], str(p["last_seq"]), p["error"]])


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    isl = sub.add_parser("island", help="create and run islands")
    isub = isl.add_subparsers(dest="island_command", required=True, metavar="ACTION")
    p = isub.add_parser("init", help="write DIR/archipel.toml for a new island")
    p.add_argument("dir")
    p.add_argument("--name", required=True, help="island name (letters, digits, _)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7770, help="gRPC port (default 7770)")
    p.add_argument("--http-port", type=int, default=0, help="web face port: page, HTTP API, TAP, HATS (0: any free port)")
    p.add_argument("--data-port", type=int, default=0, help="bulk data port: partition files over HTTPS (0: any free port)")
    p.add_argument("--spark-master", default="", help="Spark master URL (default local[2])")
    p.add_argument("--peer", action="append", metavar="HOST:PORT", help="island to join (repeatable)")
    p.add_argument("--peer-port", type=int, default=0, help="island-to-island (mutual TLS) port (default: port + 1)")
    p.add_argument("--ca", metavar="CA_DIR", help="the archipelago's CA (from `archipel certs init`); without it a "
                   "new CA is made in DIR/ca")
    p.add_argument("--anonymous", choices=["none", "read-public"], help="[security] anonymous (default none)")
    p.set_defaults(func=cmd_island_init)
    p = isub.add_parser("worker", help="run a Celery replication worker of the island in DIR (until SIGTERM)")
    p.add_argument("dir")
    p.add_argument("--concurrency", type=int, help="transfer threads (default: [replication] concurrency)")
    p.add_argument("--name", help="the worker's Celery name (default worker-HOST@ISLAND)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_island_worker)
    p = isub.add_parser("serve", help="run the island in DIR until SIGINT/SIGTERM")
    p.add_argument("dir")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_island_serve)

    p = sub.add_parser("peers", help="list the islands this one follows, add or remove one", parents=[common])
    p.add_argument("action", nargs="?", choices=["list", "add", "remove"], default="list")
    p.add_argument("address", nargs="?", metavar="HOST:PORT|ISLAND")
    p.set_defaults(func=cmd_peers)
