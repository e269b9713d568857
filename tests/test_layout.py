"""The architecture, checked: ``shared`` imports no service and no service imports another."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "shared": ROOT / "shared" / "shared",
    "gateway": ROOT / "services" / "gateway" / "gateway",
    "identity": ROOT / "services" / "identity" / "identity",
    "issuance": ROOT / "services" / "issuance" / "issuance",
    "settlement": ROOT / "services" / "settlement" / "settlement",
}
OURS = set(PACKAGES) | {"devkit", "tests", "support"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def violations() -> list[str]:
    found = []
    for owner, pkg in PACKAGES.items():
        allowed = {owner} if owner == "shared" else {owner, "shared"}
        for path in sorted(pkg.rglob("*.py")):
            for root in imported_roots(path) & OURS:
                if root not in allowed:
                    found.append(f"{path.relative_to(ROOT)} imports {root}")
    return found


def test_no_forbidden_imports() -> None:
    assert violations() == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from settlement.ledger import service\nimport issuance\n")
    assert imported_roots(bad) & OURS == {"settlement", "issuance"}


def test_every_package_exists_and_has_modules() -> None:
    for pkg in PACKAGES.values():
        assert len(list(pkg.rglob("*.py"))) >= 3, pkg
