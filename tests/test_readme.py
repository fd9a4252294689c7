"""The README is what a newcomer runs: its commands are CI's, its links resolve, its example is real."""
from __future__ import annotations

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def _commands() -> list:
    block = README.split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_the_readme_commands_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = _commands()
    assert len(commands) == 2
    assert [line for line in ci if line in commands] == commands
    assert "torch==2.13.0" in commands[1] and "pytest" in commands[1]


def test_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_example_output_is_real(cli):
    shown = README.split("`archspec check specs/inception_v3.yaml --depth 1`:", 1)[1].split("```", 2)[1].strip("\n")
    proc = cli("check", "specs/inception_v3.yaml", "--depth", "1")
    assert proc.returncode == 0
    assert proc.stdout.strip("\n") == shown.strip("\n")
