"""docs/guide.md is real: each spec it shows is its file under tests/specs/guide/ (an excerpt, a part
of it), each output is what the command prints, each class is what the generator writes."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT

GUIDE = (ROOT / "docs" / "guide.md").read_text()


def _blocks(kind: str, fence: str) -> list:
    """(argument, text) of every ``<!-- kind: ARGUMENT -->`` followed by a fenced block."""
    return re.findall(rf"<!-- {kind}: (.+?) -->\s*```{fence}\n(.*?)```", GUIDE, flags=re.S)


def test_examples_are_the_files_and_check():
    from archspec.pipeline import compile_spec

    examples = _blocks("example", "yaml")
    assert [p for p, _ in examples] == ["tests/specs/guide/step1.yaml", "tests/specs/guide/step2.yaml",
                                        "tests/specs/guide/mbnet.yaml"]
    for path, text in examples:
        assert text == (ROOT / path).read_text(), f"docs/guide.md example differs from {path}"
        compile_spec(str(ROOT / path))  # checks the expect: block too
    excerpts = _blocks("excerpt", "yaml")
    assert excerpts
    for path, text in excerpts:
        assert text in (ROOT / path).read_text(), f"docs/guide.md excerpt is not part of {path}"
        compile_spec(str(ROOT / path))


def test_check_outputs_are_real(cli):
    outputs = [(args, text) for args, text in _blocks("output", "") if args.startswith("archspec check")]
    assert len(outputs) == 5
    for args, text in outputs:
        argv = args.split()[1:]
        failing = argv[-2:] == ["(exit", "1)"]
        proc = cli(*argv[:-2] if failing else argv)
        assert proc.returncode == (1 if failing else 0), args
        assert (proc.stderr if failing else proc.stdout) == text, f"docs/guide.md: output of {args} changed"


def test_generated_classes_are_real():
    from archspec.generate import generate
    from archspec.pipeline import compile_spec

    shown = _blocks("generated", "python")
    assert [a for a, _ in shown] == ["tests/specs/guide/mbnet.yaml MBBlock", "tests/specs/guide/mbnet.yaml SqueezeExcite"]
    for argument, text in shown:
        path, cls = argument.split()
        code = generate(compile_spec(str(ROOT / path)))
        start = code.index(f"\nclass {cls}(") + 1
        end = min((i for i in (code.find("\nclass ", start), code.find("\ndef ", start)) if i > 0), default=len(code))
        assert text == code[start:end].rstrip("\n") + "\n", f"docs/guide.md: class {cls} of {path} changed"


def test_build_output_is_real_and_the_module_runs(cli, tmp_path):
    """The build command as shown (its --verify imports torch), run in an empty folder; then the
    module runs as the guide says."""
    pytest.importorskip("torch")
    [(args, text)] = [(a, t) for a, t in _blocks("output", "") if a.startswith("archspec build")]
    argv = [str(ROOT / a) if a.endswith(".yaml") else a for a in args.split()[1:]]
    proc = cli(*argv, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == text
    import torch

    from archspec.verify import import_generated

    model = import_generated(str(tmp_path / "out" / "mbnet.py")).MBNet()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    keys = list(model.state_dict())
    assert "block2.expand.weight" in keys and "block3.se.fc1.bias" in keys and "block1.expand.weight" not in keys
