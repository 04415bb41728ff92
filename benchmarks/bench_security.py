"""What TLS and token checks cost: the same island, the same data and the same queries, over its
TLS client port (with a bearer token, verified at every call) and over a plaintext benchmark port
(``[security] benchmark_plaintext_port``: no TLS, no token), alternated in one run. Readers run
in their own processes. Also the cost of one token verification, in process.

    .venv/bin/python benchmarks/bench_security.py [--runs 3] [--small 60]
"""

from __future__ import annotations

import sys
import time

from common import DATA, DATASET, SQL_READER, arguments, make_input, median, report, run_python
from islands import IslandProcess, free_port

# The transport alone: a gRPC server streaming 3 MiB messages, read over TLS and over plaintext
# by a client in another process (the floor of what TLS costs any gRPC data path here).
RAW_SERVER = """
import os, sys, grpc
from concurrent import futures
pay = os.urandom(3 << 20)
class H(grpc.GenericRpcHandler):
    def service(self, details):
        return grpc.unary_stream_rpc_method_handler(lambda req, ctx: (pay for _ in range(300)))
srv = grpc.server(futures.ThreadPoolExecutor(4))
srv.add_generic_rpc_handlers((H(),))
plain = srv.add_insecure_port("127.0.0.1:0")
key, cert = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
tls = srv.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
srv.start()
print(plain, tls, flush=True)
srv.wait_for_termination()
"""
RAW_CLIENT = """
import json, sys, time, grpc
mode, port, ca = sys.argv[1], sys.argv[2], sys.argv[3]
opts = [("grpc.max_receive_message_length", 64 << 20)]
ch = (grpc.insecure_channel("127.0.0.1:" + port, options=opts) if mode == "plain" else
      grpc.secure_channel("127.0.0.1:" + port, grpc.ssl_channel_credentials(open(ca, "rb").read()), options=opts))
call = ch.unary_stream("/raw/stream", request_serializer=lambda x: x, response_deserializer=lambda x: x)
list(call(b"", timeout=120))
t0 = time.perf_counter()
n = sum(len(m) for m in call(b"", timeout=120))
print(json.dumps({"rate": n / (time.perf_counter() - t0)}))
"""

SMALL = f"SELECT id, ra, dec FROM {DATASET} WHERE cone(ra, dec, 40, 20, 0.2)"
WHOLE = f"SELECT * FROM {DATASET}"


def main() -> None:
    args = arguments(__doc__,
                     runs=(3, "whole-catalog reads per mode"),
                     small=(60, "small queries per mode and round"))
    DATA.mkdir(parents=True, exist_ok=True)
    folder = DATA / "island-security"
    plain_port = free_port()
    isl = IslandProcess(folder, "benchsec", extra_config="[spark]\nstart = false\n"
                        f"[security]\nbenchmark_plaintext_port = {plain_port}\n")
    if (folder / "archipel.toml").exists():
        from island.config import load_config

        plain_port = load_config(folder, environ={}).security.benchmark_plaintext_port
    isl.start()
    try:
        with isl.client() as c:
            if DATASET not in {d.name for d in c.datasets()}:
                c.ingest(str(make_input()), DATASET)
        import os

        os.environ.update({"ARCHIPEL_CA": str(isl.ca), "ARCHIPEL_TOKEN": isl.admin_token})
        plain = f"127.0.0.1:{plain_port}"
        small = {"tls": [], "plain": []}
        whole = {"tls": [], "plain": []}
        for _ in range(3):  # alternated rounds: drifts of the machine fall on both
            for mode, address in (("tls", isl.address), ("plain", plain)):
                small[mode] += run_python(SQL_READER, address, mode, SMALL, str(args.small), DATASET)["seconds"]
        nbytes = 0
        for _ in range(args.runs):
            for mode, address in (("tls", isl.address), ("plain", plain)):
                r = run_python(SQL_READER, address, mode, WHOLE, "1", DATASET)
                whole[mode] += r["seconds"]
                nbytes = r["bytes"]
    finally:
        isl.stop()
    verify_us = _token_verify_us(folder)
    raw = _raw_grpc(folder)
    s_tls, s_plain = median(small["tls"]) * 1000, median(small["plain"]) * 1000
    w_tls, w_plain = nbytes / min(whole["tls"]) / 1e9, nbytes / min(whole["plain"]) / 1e9
    report(f"TLS and tokens against plaintext ({time.strftime('%Y-%m-%d')})", [
        ("small query median, TLS + token", f"{s_tls:.2f} ms"),
        ("small query median, plaintext", f"{s_plain:.2f} ms"),
        ("small query overhead", f"{(s_tls / s_plain - 1) * 100:+.1f} %"),
        ("whole-catalog read, TLS + token", f"{w_tls:.2f} GB/s ({nbytes / 1e9:.2f} GB, best of {args.runs})"),
        ("whole-catalog read, plaintext", f"{w_plain:.2f} GB/s"),
        ("whole-catalog ratio TLS / plaintext", f"{w_tls / w_plain:.2f}"),
        ("one token verification (cached certificate)", f"{verify_us:.0f} us"),
        ("raw gRPC stream, TLS / plaintext (the transport's floor)",
         f"{raw['tls'] / 1e9:.2f} / {raw['plain'] / 1e9:.2f} GB/s = {raw['tls'] / raw['plain']:.2f}"),
    ])


def _raw_grpc(folder) -> dict[str, float]:
    import subprocess

    server = subprocess.Popen([sys.executable, "-c", RAW_SERVER, str(folder / "island-key.pem"),
                               str(folder / "island.pem")], stdout=subprocess.PIPE, text=True)
    try:
        plain, tls = server.stdout.readline().split()
        best = {"plain": 0.0, "tls": 0.0}
        for _ in range(3):
            for mode, port in (("plain", plain), ("tls", tls)):
                best[mode] = max(best[mode], run_python(RAW_CLIENT, mode, port, str(folder / "ca.pem"))["rate"])
        return best
    finally:
        server.kill()
        server.wait()


def _token_verify_us(folder) -> float:
    from federation.pki import load_credentials
    from island.security import tokens

    creds = load_credentials(folder, "benchsec")
    token, _ = tokens.mint(creds, "bench")
    tokens.verify(creds, token, lambda _id: False)
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        tokens.verify(creds, token, lambda _id: False)
    return (time.perf_counter() - t0) / n * 1e6


if __name__ == "__main__":
    sys.exit(main())
