"""The layers hold: the kernel imports no feature, the inventory names no other app, and the programs that
run outside the console import no Django (import-linter's contracts in pyproject.toml)."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_import_contracts_are_kept():
    lint = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "3 kept, 0 broken" in lint.stdout


def test_every_part_of_the_inventory_is_under_the_contracts():
    """A module added to console/ beside the kernel is checked too: the contracts list every one."""
    parts = {f"console.{path.stem}" for path in (ROOT / "console").iterdir()
             if path.name not in ("core", "migrations", "templates", "__init__.py", "__pycache__")
             and (path.suffix == ".py" or (path / "__init__.py").exists())}
    kernel, inventory = contracts()[:2]
    assert parts <= set(kernel["forbidden_modules"])
    assert parts <= set(inventory["source_modules"])
