"""``python -m devkit.soak`` (``make soak``): a bounded soak of a real cluster.

Prints the table, writes the JSON, exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from devkit.soak.harness import SoakConfig, run
from devkit.soak.report import render, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long the traffic runs")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--workers", type=int, default=8, help="concurrent client loops")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before RSS start")
    parser.add_argument("--holders", type=int, default=None, help="synthetic holders to import")
    parser.add_argument("--replicas", type=int, default=1, help="processes per service")
    parser.add_argument("--out", type=Path, default=Path("test-output/soak"))
    args = parser.parse_args(argv)
    cfg = SoakConfig(
        seconds=args.seconds,
        seed=args.seed,
        workers=args.workers,
        warmup=args.warmup,
        holders=args.holders,
        replicas=args.replicas,
        pg_url=os.environ.get(
            "ESSC_SOAK_POSTGRES_URL",
            os.environ.get("ESSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        ),
        redis_url=os.environ.get("ESSC_REDIS_URL", "redis://127.0.0.1:6379/0") or None,
    )
    print(f"soak: {cfg.seconds:g} s, {cfg.workers} workers, seed {cfg.seed} ...", flush=True)
    report = run(cfg)
    path = write(report, args.out)
    print(render(report))
    print(f"soak: wrote {path}; {'all checks passed' if report['ok'] else 'CHECKS FAILED'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
