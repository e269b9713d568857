"""Suite-wide fixtures: the PostgreSQL server, fresh per-test-run databases, a real cluster.

PostgreSQL comes from ``ESSC_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Tests marked ``postgres`` are
skipped with a loud reason when it is unreachable, unless
``ESSC_REQUIRE_POSTGRES=1`` (CI), which turns that into a failure. The summary
at the end says how many PostgreSQL tests ran.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest

from support.pg import PG_URL, pg_reachable

REQUIRE_PG = os.environ.get("ESSC_REQUIRE_POSTGRES") == "1"
_PG_OK: bool | None = None
_pg_outcomes = {"passed": 0, "failed": 0, "skipped": 0}


def _pg_ok() -> bool:
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = asyncio.run(pg_reachable(PG_URL))
    return _PG_OK


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    pg_items = [i for i in items if i.get_closest_marker("postgres")]
    if not pg_items or _pg_ok():
        return
    if REQUIRE_PG:
        raise pytest.UsageError(
            f"ESSC_REQUIRE_POSTGRES=1 but PostgreSQL is not reachable at {PG_URL}"
        )
    skip = pytest.mark.skip(
        reason=f"PostgreSQL not reachable at {PG_URL}: money paths, concurrency and "
        "end-to-end tests NOT run"
    )
    for item in pg_items:
        item.add_marker(skip)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "postgres" not in report.keywords:
        return
    if report.when == "call":
        _pg_outcomes["passed" if report.passed else "failed"] += 1
    elif report.skipped:
        _pg_outcomes["skipped"] += 1
    elif report.failed:
        _pg_outcomes["failed"] += 1


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    ran = _pg_outcomes["passed"] + _pg_outcomes["failed"]
    terminalreporter.section("PostgreSQL")
    terminalreporter.write_line(
        f"PostgreSQL tests at {PG_URL}: {_pg_outcomes['passed']} passed, "
        f"{_pg_outcomes['failed']} failed, {_pg_outcomes['skipped']} skipped"
    )
    if _pg_outcomes["skipped"] and not ran:
        terminalreporter.write_line(
            "WARNING: no PostgreSQL test ran. Money paths and concurrency are untested.",
            red=True,
        )
    marker = os.environ.get("ESSC_PG_REPORT")
    if marker:
        Path(marker).write_text(
            f"{_pg_outcomes['passed']} {_pg_outcomes['failed']} {_pg_outcomes['skipped']}\n"
        )


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id unique to this test run (database names, temp dirs)."""
    return f"t{os.getpid()}{secrets.token_hex(2)}"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where tests write artefacts worth keeping (screenshots, captured logs)."""
    path = Path(os.environ.get("ESSC_TEST_OUTPUT", "test-output")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
