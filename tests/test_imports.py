"""`check` and `build` never import torch, and each command imports only what it needs (start-up
time is most of a check: docs/performance.md)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

HEAVY = ("torch", "torchvision", "numpy", "jinja2", "networkx", "pydantic", "yaml")


def imported_by(*args) -> set:
    """Top-level packages a `python -X importtime -m archspec ARGS` process imports."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "archspec", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$", proc.stderr, re.M)
    assert names, "no -X importtime output"
    return {n.split(".")[0] for n in names}


def test_check_imports_no_torch_no_templates_no_networkx():
    """networkx alone costs about as much as the rest of a check; the graph is archspec/graph.py."""
    roots = imported_by("check", "specs/inception_v3.yaml")
    assert {"pydantic", "yaml", "archspec"} <= roots
    assert not roots & {"torch", "torchvision", "numpy", "jinja2", "networkx"}


@pytest.mark.parametrize("deploy", [False, True], ids=["build", "build --deploy"])
def test_build_imports_no_torch(tmp_path, deploy):
    roots = imported_by("build", *(["--deploy"] if deploy else []), "-o", tmp_path, "specs/inception_v3.yaml")
    assert "jinja2" in roots
    assert not roots & {"torch", "torchvision", "numpy"}
    assert (tmp_path / ("inception_v3_deploy.py" if deploy else "inception_v3.py")).exists()


def test_help_imports_no_dependency():
    roots = imported_by("--help")
    assert not roots & set(HEAVY)
