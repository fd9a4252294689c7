"""Packaging: templates and stock specs are package data, so an installed wheel builds from any directory."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    wheels, site = tmp / "wheels", tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("archspec-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return site


def _run(site, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # the installed copy, not the checkout
    return subprocess.run([sys.executable, "-m", "archspec", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_wheel_contains_templates_and_specs(installed):
    pkg = installed / "archspec"
    assert (pkg / "templates" / "module.py.j2").is_file()
    assert (pkg / "specs" / "googlenet.yaml").is_file()
    assert (pkg / "specs" / "lib" / "basic.yaml").is_file()
    assert (pkg / "devices" / "cpu-epyc-2core.yaml").is_file()


def test_installed_wheel_builds_from_any_directory(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed)
    where = subprocess.run([sys.executable, "-c", "import archspec; print(archspec.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(installed))
    proc = _run(installed, "build", "googlenet", cwd=tmp_path)  # to ./generated, as in the checkout
    assert proc.returncode == 0, proc.stderr
    built = (tmp_path / "generated" / "googlenet.py").read_text()
    assert built == (ROOT / "generated" / "googlenet.py").read_text()
    check = _run(installed, "check", "inception_v3", "--format", "json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert '"params": 27161264' in check.stdout
    # every command's code is in the wheel (packages are listed explicitly in pyproject.toml)
    diff = _run(installed, "diff", "googlenet_paper", "googlenet", cwd=tmp_path)
    assert diff.returncode == 1 and "-373,392" in diff.stdout, diff.stderr
    factorized = _run(installed, "check", "googlenet_factorized", cwd=tmp_path)  # transforms/
    assert factorized.returncode == 0, factorized.stderr
    memory = _run(installed, "check", "resnet18", "--batch", "2", "--device", "a100-sxm4-80gb", cwd=tmp_path)
    assert memory.returncode == 0 and "roofline on a100-sxm4-80gb" in memory.stdout, memory.stderr  # devices/
    schema = _run(installed, "schema", cwd=tmp_path)
    assert schema.returncode == 0 and schema.stdout.lstrip().startswith("{")
