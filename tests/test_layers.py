"""Imports run one way: ``mobilenets_tf`` and ``device_bench`` at the bottom, ``export`` above them,
``mnbench`` on top. Read from the source with ``ast`` (every import, at module level or inside a function)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Which project packages each package may import (besides itself).
MAY_IMPORT = {
    "mobilenets_tf": set(),
    "device_bench": set(),
    "export": {"mobilenets_tf", "device_bench"},
    "mnbench": {"mobilenets_tf", "device_bench", "export"},
}


def imported_packages(path: Path, package: str) -> dict[str, int]:
    """Project packages a source file imports, each with the first line that does; relative imports resolve
    to the file's own package."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in MAY_IMPORT:
                found.setdefault(top, node.lineno)
    return found


def violations(root: Path) -> list[str]:
    result = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((root / package).rglob("*.py")):
            for imported, line in imported_packages(path, package).items():
                if imported != package and imported not in allowed:
                    result.append(f"{path.relative_to(root)}:{line} imports {imported}")
    return result


def test_imports_run_one_way():
    assert violations(ROOT) == []


def test_the_check_finds_an_upward_import(tmp_path):
    (tmp_path / "device_bench").mkdir()
    (tmp_path / "device_bench" / "ok.py").write_text("from .store import ResultStore\nimport numpy\n")
    (tmp_path / "device_bench" / "bad.py").write_text("def f():\n    from export.pipeline import export\n")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "bad.py").write_text("import mnbench.cli\nfrom device_bench import store\n")
    assert violations(tmp_path) == ["device_bench/bad.py:2 imports export", "export/bad.py:1 imports mnbench"]


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_every_package_is_checked(package):
    assert list((ROOT / package).rglob("*.py")), f"{package}/ has no sources: the rule would check nothing"


def test_the_export_cache_key_hashes_every_package_export_imports():
    from export.pipeline import SOURCE_PACKAGES

    imported = {"export"} | {name for path in (ROOT / "export").rglob("*.py")
                             for name in imported_packages(path, "export")}
    assert imported <= set(SOURCE_PACKAGES)
