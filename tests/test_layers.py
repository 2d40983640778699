"""The layers of DESIGN.md §3 and the types of every package hold: import-linter's
contracts and mypy, with the settings in pyproject.toml."""

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def test_import_contracts_are_kept() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]
    result = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contracts)} kept, 0 broken" in result.stdout


def test_no_import_cycles_between_modules() -> None:
    """No two modules of meshops import each other, directly or through others."""
    import grimp

    graph = grimp.build_graph("meshops", "bot", "workers", "workflows", "sandbox")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == module or module.startswith(imported + ".") or \
                    imported.startswith(module + "."):
                continue  # a package and its own modules
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} -> {imported} -> … -> {module}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_mypy_passes_over_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert set(config["files"]) >= {"workflows", "workers", "bot", "meshops", "sandbox"}
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
