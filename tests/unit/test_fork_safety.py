"""gRPC's fork handlers are off in every process that imports archipel (islands, jobs, clients):
a fork to exec a child, while gRPC's threads are busy, runs none of them. With them on, such a
fork crashed a job's process in gRPC's epoll1 poller in the full suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

SCRIPT = """
import {first}
import os
import grpc, subprocess, threading
from concurrent import futures
server = grpc.server(futures.ThreadPoolExecutor(4))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
channel = grpc.insecure_channel(f"127.0.0.1:{{port}}")
stop = threading.Event()
def busy():
    while not stop.is_set():
        try:
            channel.unary_unary("/x/y")(b"", timeout=0.05)
        except grpc.RpcError:
            pass
threads = [threading.Thread(target=busy) for _ in range(3)]
for t in threads:
    t.start()
for _ in range(30):
    subprocess.run(["true"], check=True, user=os.getuid())  # a real fork(), as a job's user switch makes
stop.set()
for t in threads:
    t.join()
server.stop(0)
print("forked", flush=True)
"""


def _run(first: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Runs SCRIPT; on a timeout its whole process group goes (a child stuck between fork and
    exec included) and TimeoutExpired is raised."""
    clean = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(first=first)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**clean, **env}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_importing_archipel_turns_grpcs_fork_handlers_off():
    # grpc alone: its handlers run at each fork, or are skipped, saying so (busy threads), or
    # deadlock the child (seen here too): any of these shows them at work.
    try:
        plain = _run("os", timeout=20)
        assert "fork_posix" in plain.stderr, plain.stderr[-2000:]
    except subprocess.TimeoutExpired:
        pass
    ours = _run("archipel")
    assert "forked" in ours.stdout and "fork_posix" not in ours.stderr, ours.stderr[-2000:]


def test_a_value_the_caller_set_is_kept():
    code = "import os, archipel; print(os.environ['GRPC_ENABLE_FORK_SUPPORT'])"
    for value in ("0", "no"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": value})
        assert out.stdout.strip() == value
