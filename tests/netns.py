"""Network namespaces for tests: a bridge in the test's own namespace and one namespace per
site, each joined to the bridge by a veth pair, with addresses 10.77.N.x the test makes (as
root). ``cut(site)`` takes a site's link down from inside its namespace and ``restore(site)``
brings it back; a ``prohibit`` route keeps the test's packets for those addresses from ever
leaving the machine while a link is down."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

__all__ = ["Sites", "available"]


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", netns, "ip"] if netns else ["ip"]) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out


def available() -> str:
    """Why namespaces cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        return "the ip command (iproute2) is missing"
    return ""


@dataclass
class Sites:
    """Sites by name: each a namespace with one address on the shared bridge."""

    names: list[str]
    net: int = field(default_factory=lambda: 77 + os.getpid() % 100)  # 10.<net>.0.0/24, per test run
    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000:05d}")
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"arb{self.tag}"

    def ns(self, site: str) -> str:
        return f"arch-{self.tag}-{site}"

    def create(self) -> Sites:
        subnet = f"10.{self.net}.0"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        _ip("route", "add", "prohibit", f"10.{self.net}.0.0/16", "metric", "4000")
        for i, site in enumerate(self.names):
            ns, outer = self.ns(site), f"arv{self.tag}{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", outer, "master", self.bridge)
            _ip("link", "set", outer, "up")
            address = f"{subnet}.{11 + i}"
            _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=ns)
            _ip("link", "set", "eth0", "up", netns=ns)
            _ip("link", "set", "lo", "up", netns=ns)
            self.addresses[site] = address
        return self

    def cut(self, site: str) -> None:
        _ip("link", "set", "eth0", "down", netns=self.ns(site))

    def restore(self, site: str) -> None:
        _ip("link", "set", "eth0", "up", netns=self.ns(site))

    def exec_prefix(self, site: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(site)]

    def destroy(self) -> None:
        for i, site in enumerate(self.names):
            pids = subprocess.run(["ip", "netns", "pids", self.ns(site)], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("link", "del", f"arv{self.tag}{i}", check=False)
            _ip("netns", "del", self.ns(site), check=False)
        _ip("link", "del", self.bridge, check=False)
        _ip("route", "del", "prohibit", f"10.{self.net}.0.0/16", "metric", "4000", check=False)
