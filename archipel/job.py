"""The runner of a batch job, started by the island: ``python -m archipel.job SCRIPT [ARG...]``.

The script runs as ``__main__`` with ``spark`` (a Spark session on this island, like
``client.spark()``), ``client`` (an ``archipel.Client`` of this island, as the job's user) and
``publish(name, table, ...)`` (``client.publish``, recorded as the job's result) ready.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m archipel.job SCRIPT [ARG...]", file=sys.stderr)
        return 2
    import archipel

    script, args = argv[0], argv[1:]
    client = archipel.connect(timeout=None)
    work = os.environ.get("ARCHIPEL_JOB_DIR", ".")
    datasets = [d for d in os.environ.get("ARCHIPEL_JOB_DATASETS", "").split(",") if d]
    spark = client.spark(datasets=datasets, island=os.environ.get("ARCHIPEL_JOB_ISLAND") or None)

    def publish(name: str, table, *args, **kwargs):
        """Publishes ``table`` (Arrow, pandas or a Spark DataFrame) as a new dataset."""
        if hasattr(table, "toArrow"):
            table = table.toArrow()
        info = client.publish(name, table, *args, **kwargs)
        with open(os.path.join(work, "published.txt"), "a", encoding="utf-8") as f:
            f.write(name + "\n")
        print(f"[archipel] published {name}", flush=True)
        return info

    sys.argv = [script, *args]
    code = 0
    try:
        runpy.run_path(script, init_globals={"spark": spark, "client": client, "publish": publish},
                       run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the job's own error, shown in its log
        traceback.print_exc()
        code = 1
    finally:
        try:
            spark.stop()
        except Exception:  # noqa: BLE001
            pass
        client.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
