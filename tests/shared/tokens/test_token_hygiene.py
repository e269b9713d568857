"""The token package is a leaf with no import-time side effects."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import shared.tokens

PACKAGE = Path(shared.tokens.__file__).resolve().parent
THIRD_PARTY = {"cryptography", "httpx", "jwt", "pydantic"}

_PROBE = """
import builtins, importlib, pkgutil, sys
from cryptography.hazmat.primitives.asymmetric import ec

def refuse(*args, **kwargs):
    raise AssertionError("side effect at import time")

ec.generate_private_key = refuse
builtins.open = refuse
import shared.tokens
for info in pkgutil.iter_modules(shared.tokens.__path__):
    importlib.import_module("shared.tokens." + info.name)
print(sorted(m for m in sys.modules if m.startswith("shared.")))
"""


def test_imports_only_stdlib_third_party_and_itself() -> None:
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                ours = name == "shared.tokens" or name.startswith("shared.tokens.")
                if not (ours or root in sys.stdlib_module_names or root in THIRD_PARTY):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent.parent)}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "shared.tokens.qr" in result.stdout
    assert "shared.tokens.negative" in result.stdout
