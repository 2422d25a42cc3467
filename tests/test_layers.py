"""The package's layers, kept by import-linter (the contract in pyproject.toml): a lower layer never imports
a higher one. The second test shows the contract can fail."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})


def test_the_layers_hold() -> None:
    result = lint(ROOT)
    assert result.returncode == 0 and "1 kept, 0 broken" in result.stdout, result.stdout + result.stderr


def test_a_lower_layer_importing_a_higher_one_fails(tmp_path) -> None:
    shutil.copytree(ROOT / "nasden", tmp_path / "nasden", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "nasden" / "core" / "space.py").open("a") as f:
        f.write("\nimport nasden.deploy.denoiser  # noqa: E402\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nasden.core is not allowed to import nasden.deploy" in result.stdout
