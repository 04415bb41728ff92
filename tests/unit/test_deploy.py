"""deploy/ checked with what runs here: systemd-analyze verifies the units (paths pointed at
this checkout), the Kubernetes manifests are consistent (selectors, ports, volumes) and their
island configuration loads with the island's own config loader; the image's entry point is a
real command. No cluster, image build or systemd boot is possible here (see the note)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from island.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is part of Debian's systemd")
def test_systemd_units_verify(tmp_path):
    archipel = Path(sys.executable).with_name("archipel")
    units = tmp_path / "units"
    units.mkdir()
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text().replace("/opt/archipel/venv/bin/archipel", str(archipel))
        text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.M)
        text = text.replace("/usr/bin/xrootd", shutil.which("xrootd") or "/bin/true")
        (units / unit.name).write_text(text)
    shutil.copytree(DEPLOY / "systemd" / "archipel-island@.service.d", units / "archipel-island@.service.d")
    for name in ("archipel-island@site1.service", "archipel-worker@site1.service", "archipel-xrootd@site1.service"):
        (units / name).symlink_to(units / name.replace("site1", ""))
        out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / name)], capture_output=True,
                             text=True, timeout=60)
        problems = [x for x in (out.stdout + out.stderr).splitlines()
                    if x.strip() and "redis-server.service" not in x and "network-online" not in x]
        assert out.returncode == 0 and not problems, problems


def _manifests() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "island.yaml").read_text()) if d]


def test_kubernetes_manifests_are_consistent(tmp_path):
    docs = _manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("StatefulSet", "archipel-site1") in kinds and ("Service", "archipel-site1") in kinds
    by_kind = {}
    for d in docs:
        assert d["apiVersion"] in ("v1", "apps/v1") and d["metadata"]["name"]
        by_kind.setdefault(d["kind"], []).append(d)
    for workload in by_kind["StatefulSet"] + by_kind["Deployment"]:
        spec = workload["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), workload["metadata"]["name"]
        volumes = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        ports = set()
        for c in spec["template"]["spec"]["containers"] + spec["template"]["spec"].get("initContainers", []):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, (c["name"], m["name"])
            ports |= {p["name"] for p in c.get("ports", [])}
        for svc in by_kind["Service"]:
            if svc["spec"]["selector"].items() <= labels.items():
                for p in svc["spec"]["ports"]:
                    assert p["targetPort"] in ports, (svc["metadata"]["name"], p)
    # the island's configuration, as the ConfigMap gives it, loads (paths relative to a folder)
    config = next(d for d in by_kind["ConfigMap"] if d["metadata"]["name"] == "archipel-site1")["data"]["archipel.toml"]
    (tmp_path / "archipel.toml").write_text(config)
    cfg = load_config(tmp_path, environ={})
    assert (cfg.island.name, cfg.island.port, cfg.island.peer_port, cfg.island.http_port) == ("site1", 7770, 7771, 7772)
    island = by_kind["StatefulSet"][0]["spec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in island["ports"]} == {7770, 7771, 7772}


def test_container_image_runs_a_real_command():
    text = (DEPLOY / "container" / "Containerfile").read_text()
    entry = re.search(r'^ENTRYPOINT \[(.*)\]$', text, re.M).group(1)
    argv = [a.strip().strip('"') for a in entry.split(",")]
    assert argv[:3] == ["archipel", "island", "serve"]
    out = subprocess.run([sys.executable, "-m", "archipel.cli.main", "island", "serve", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "DIR" in out.stdout.upper()
    assert set(re.search(r"^EXPOSE (.*)$", text, re.M).group(1).split()) == {"7770", "7771", "7772"}
