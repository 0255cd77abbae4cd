"""The set-up files agree: conda reads requirements.txt, which lists everything the code imports."""
from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"solutions", "autograder", "course_checks", "nli_data", "tests", "conftest", "wire", "worker", "seccomp"}
CODE_DIRS = ("solutions", "autograder", "tests", "assignments")


def requirement_names() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_normalise(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]))
    return names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if ".ipynb_checkpoints" in path.parts or "release" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], path)
    return found


def test_environment_yml_reads_requirements_txt():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_part = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-r requirements.txt" in pip_part


def test_every_imported_package_is_listed_in_requirements():
    listed = requirement_names()
    distributions = metadata.packages_distributions()
    missing = {}
    for module, path in imported_modules().items():
        if module in sys.stdlib_module_names or module in LOCAL or module.startswith("_"):
            continue
        dists = {_normalise(d) for d in distributions.get(module, [])}
        if not dists & listed:
            missing[module] = f"{path.relative_to(ROOT)} (distribution: {', '.join(sorted(dists)) or 'unknown'})"
    assert not missing, f"imported but not in requirements.txt: {missing}"


def test_torch_is_bounded_to_the_tested_release():
    line = next(l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith("torch"))
    assert "<=" in line or "==" in line, "an unbounded torch may resolve to a multi-GB CUDA build"
