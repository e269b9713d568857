"""deploy/compose.yaml: PostgreSQL with one database per service, Redis, a one-shot migration
per service that the service waits for, hardened containers, and no secret in the file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
PORTS = {"gateway": 8000, "identity": 8001, "issuance": 8002, "settlement": 8003}
DB_SERVICES = ("identity", "issuance", "settlement")
ENV_VARS = (
    "POSTGRES_PASSWORD",
    "IDENTITY_DB_PASSWORD",
    "ISSUANCE_DB_PASSWORD",
    "SETTLEMENT_DB_PASSWORD",
    "REDIS_PASSWORD",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_services_and_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "redis",
        *PORTS,
        *(f"migrate-{svc}" for svc in DB_SERVICES),
    }
    for svc in DB_SERVICES:
        migrate = services[f"migrate-{svc}"]
        assert migrate["command"] == ["python", "-m", svc, "migrate"]
        assert migrate["restart"] == "no"
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[svc]["depends_on"][f"migrate-{svc}"] == {
            "condition": "service_completed_successfully"
        }
        url = services[svc]["environment"][f"{svc.upper()}_DATABASE_URL"]
        assert url == migrate["environment"][f"{svc.upper()}_DATABASE_URL"]
        assert re.fullmatch(
            rf"postgresql\+asyncpg://{svc}:\$\{{{svc.upper()}_DB_PASSWORD\}}@postgres:5432/{svc}",
            url,
        )
    for svc in PORTS:
        assert (
            services["gateway"]["depends_on"].get(svc, {"condition": "service_healthy"})[
                "condition"
            ]
            == "service_healthy"
        )


def test_each_image_is_its_service_target_hardened(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for svc, port in PORTS.items():
        for name in (svc, f"migrate-{svc}"):
            if name not in services:
                continue
            spec = services[name]
            assert spec["build"] == {
                "context": "..",
                "dockerfile": "deploy/Dockerfile",
                "target": svc,
            }
            assert spec["user"] == "10001:10001"
            assert spec["read_only"] is True
            assert spec["cap_drop"] == ["ALL"]
            assert "no-new-privileges:true" in spec["security_opt"]
        health = " ".join(services[svc]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in health
        assert services[svc]["volumes"] == [f"{svc}-keys:/var/lib/essc/keys"]
    assert services["gateway"]["ports"] == ["127.0.0.1:8000:8000"]


def test_one_database_per_service_from_the_init_script(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["postgres"]["volumes"]
    assert "./compose/initdb:/docker-entrypoint-initdb.d:ro" in mounts
    script = (ROOT / "deploy" / "compose" / "initdb" / "10-essc-databases.sh").read_text()
    assert "for svc in identity issuance settlement" in script
    assert 'CREATE DATABASE :"role" OWNER :"role"' in script
    assert 'REVOKE ALL ON DATABASE :"role" FROM PUBLIC' in script
    assert os.access(ROOT / "deploy" / "compose" / "initdb" / "10-essc-databases.sh", os.X_OK)


def test_no_secret_is_committed() -> None:
    text = COMPOSE.read_text()
    for var in ENV_VARS:
        assert f"${{{var}:?" in text or f"${{{var}}}" in text, var
    # Every password-like value is an interpolation, never a literal.
    for key, value in re.findall(r"^\s*(\w*PASSWORD\w*|REDISCLI_AUTH):\s*(.+)$", text, flags=re.M):
        assert value.startswith("${"), (key, value)
    example = (ROOT / "deploy" / ".env.example").read_text()
    assert all(re.search(rf"^{var}=$", example, flags=re.M) for var in ENV_VARS)
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    probe = (
        subprocess.run(
            [docker or "docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if docker
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed here: structure checked above")
    env = dict(os.environ, **{var: "x" * 16 for var in ENV_VARS})
    result = subprocess.run(
        [docker or "docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
