"""The hardening tests share one seeded cluster (``support.seeded``) for the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.seeded import Seeded, seeded_cluster


@pytest.fixture(scope="package")
def seeded(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[Seeded]:
    with seeded_cluster(tmp_path_factory.mktemp("hardening"), run_id + "h") as s:
        yield s
