"""The language of issue 11 (items 2 and 3): expressions, structure and op arguments, each through
the whole pipeline: the analysis's exact figures, the generated module (read as text where its form
matters) and ``build --verify``'s comparison of the generated and deploy modules with the reference
interpreter (archspec/interpret.py) in eval and training. Messages for what a spec may not say are
asserted exactly, with their position."""
from __future__ import annotations

import textwrap

import pytest

from archspec.errors import ArchspecError, flatten
from archspec.pipeline import compile_spec

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _exec(source: str, name: str):
    namespace: dict = {"__name__": f"_archspec_test_{name}"}
    exec(compile(source, f"{name}.py", "exec"), namespace)
    return namespace[namespace["__all__"][0]]


def built(tmp_path, text: str, name: str = "net"):
    """(compiled, generated source) of a spec, after the generated and deploy modules were verified
    against the interpreter (build --verify)."""
    from archspec.deploy import generate_deploy
    from archspec.generate import generate
    from archspec.verify import verify, verify_deploy

    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    c = compile_spec(str(path))
    source = generate(c)
    verify(c, _exec(source, name))
    verify_deploy(c, _exec(generate_deploy(c), f"{name}_deploy"))
    return c, source


def errors(tmp_path, text: str, name: str = "net") -> list:
    """Every error of a spec as 'line:col: message'."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ArchspecError) as info:
        from archspec.generate import generate

        generate(compile_spec(str(path)))
    return [f"{e.loc.line}:{e.loc.col}: {e.message}" for e in flatten(info.value)]


# --- block arguments ------------------------------------------------------------------------------

def test_a_required_argument_after_a_defaulted_one_is_keyword_only(tmp_path):
    """The fuzzer's SyntaxError: `def __init__(self, in_channels, a=4, b)` is not Python."""
    c, source = built(tmp_path, """\
        archspec: 1
        name: req
        input: [3, 8, 8]
        num_classes: 4
        blocks:
          B:
            args: {a: int = 4, b: int, c: bool = true}
            layers:
              - conv: conv2d(a + b, 3, padding=1, bias=c)
              - relu
        layers:
          - b1: B(2, 3)
          - b2: B(b=1)
          - b3: B(1, 2, false)
          - flatten
          - fc: linear(num_classes)
        """)
    assert "    def __init__(self, in_channels: int, *, a: int = 4, b: int, c: bool = True) -> None:" in source
    assert "self.b1 = B(3, a=2, b=3)" in source and "self.b3 = B(5, a=1, b=2, c=False)" in source
    assert c.analysis.totals.params == (3 * 5 * 9 + 5) + (5 * 5 * 9 + 5) + (5 * 3 * 9) + 3 * 64 * 4 + 4
