"""Regenerates archipel/v1/*_pb2*.py from proto/archipel/v1/*.proto.

Run from anywhere: ``python scripts/gen_protos.py``. ``--check`` regenerates into a temporary
folder and exits non-zero when the committed modules differ (the test suite calls this).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_PACKAGE = Path("archipel") / "v1"


def generate(out_root: Path) -> list[Path]:
    from grpc_tools import protoc  # imported here: only developers need grpcio-tools

    protos = sorted((PROTO_ROOT / OUT_PACKAGE).glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_root / OUT_PACKAGE).iterdir() if p.name != "__init__.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        committed = ROOT / OUT_PACKAGE
        if args.check:
            stale = [
                g.name
                for g in generated
                if not (committed / g.name).exists() or not filecmp.cmp(g, committed / g.name, shallow=False)
            ]
            extra = {p.name for p in committed.glob("*_pb2*.py*")} - {g.name for g in generated}
            if stale or extra:
                print(f"generated modules are stale: {sorted(stale + list(extra))}; "
                      "run python scripts/gen_protos.py", file=sys.stderr)
                return 1
            return 0
        for g in generated:
            shutil.copyfile(g, committed / g.name)
            print(f"wrote {OUT_PACKAGE / g.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
