"""The soak's table (Markdown, as the README quotes it) and its JSON file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def render(report: dict[str, Any]) -> str:
    """Operations per kind, statuses, latency; RSS and CPU per process; the verdicts."""
    c = report["config"]
    lines = [
        f"soak: {report['elapsed_s']} s, {c['workers']} workers, seed {c['seed']}, "
        f"warm-up {c['warmup_s']:g} s, {c['holders']} holders, replicas {c['replicas']}, "
        f"Redis {'on' if c['redis'] else 'off'}",
        "",
        "| operation | count | per s | statuses | p50 ms | p95 ms |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for k in report["operations"]:
        statuses = ", ".join(f"{s}: {n}" for s, n in k["statuses"].items())
        lines.append(
            f"| {k['kind']} | {k['count']:,} | {k['per_s']:.1f} | {statuses} | "
            f"{k['p50_ms']:.1f} | {k['p95_ms']:.1f} |"
        )
    total = report["requests"]
    lines += [
        f"| **all** | **{total:,}** | **{total / report['elapsed_s']:.1f}** | | | |",
        "",
        "| process | RSS after warm-up MiB | RSS at end MiB | growth MiB | allowed MiB | CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in report["processes"]:
        lines.append(
            f"| {p['process']} | {p['rss_start_kib'] / 1024:.1f} | {p['rss_end_kib'] / 1024:.1f} "
            f"| {p['growth_kib'] / 1024:+.1f} | {p['allowed_kib'] / 1024:.1f} | {p['cpu_s']:.1f} |"
        )
    lc = report["ledger_check"]
    lines += [
        "",
        f"settlements acknowledged {report['settlements_acknowledged']:,} / stored "
        f"{report['settlements_stored']:,}; refunds acknowledged {report['refunds_acknowledged']:,}"
        f" / stored {report['refunds_stored']:,}; ledger transactions "
        f"{report['ledger_transactions']:,}; ledger check balanced={lc.get('balanced')} "
        f"problems={lc.get('problems')}; reconciliation checks "
        f"{sum(r['match'] for r in report['reconciliation_checks'])}/"
        f"{len(report['reconciliation_checks'])} match",
    ]
    if report["unexpected_statuses"]:
        lines.append(
            "non-2xx seen: "
            + "; ".join(f"{k} ({v or 'no type'})" for k, v in report["unexpected_statuses"].items())
        )
    phases = report.get("phases_s", {})
    lines.append(
        "wall time: "
        + ", ".join(f"{k} {v:g} s" for k, v in phases.items())
        + f" (of which holders imported and their accounts opened {report['holders_import_s']:g} s)"
    )
    lines.append("")
    for v in report["verdicts"]:
        mark = "PASS" if v["ok"] else "FAIL"
        lines.append(f"{mark}  {v['check']}" + ("" if v["ok"] else ": " + "; ".join(v["problems"])))
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> Path:
    """``soak-<stamp>.json`` and ``latest.json`` (and ``latest.md``) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = out / f"soak-{stamp}.json"
    text = json.dumps({"when": stamp, **report}, indent=2, default=str)
    path.write_text(text)
    (out / "latest.json").write_text(text)
    (out / "latest.md").write_text(render(report) + "\n")
    return path
