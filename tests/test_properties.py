"""Property tests (hypothesis), issue 6: random mutations of the shipped specs (delete a key,
change a type, swap two values, truncate the file): archspec never ends in an internal error or a
traceback, and never writes a file unless it succeeds.

Random valid specs from the whole language, compared with the static analysis and the reference
interpreter, are in tests/test_fuzz.py (issue 10). Examples are derandomized, so CI sees the same
ones every run.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec import cli

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "specs").glob("*.yaml"))
LIBS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "specs" / "lib").glob("*.yaml"))

_WORK = Path(tempfile.mkdtemp(prefix="archspec-props-"))  # hypothesis does not mix with tmp_path


def _paths(data, prefix=()):
    """Every (path, value) in a loaded YAML document."""
    yield prefix, data
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


def _get(data, path):
    for p in path:
        data = data[p]
    return data


def _set(data, path, value):
    _get(data, path[:-1])[path[-1]] = value


_OTHER_VALUES = [None, 0, -1, 1.5, True, "", "x", "conv2d(", [], {}, [1, 2], {"a": 1}, 10**15, "relu"]


@st.composite
def mutations(draw):
    spec = draw(st.sampled_from(SPECS + LIBS))
    text = (ROOT / spec).read_text()
    kind = draw(st.sampled_from(["delete", "retype", "swap", "truncate"]))
    if kind == "truncate":
        return spec, kind, text[:draw(st.integers(0, len(text) - 1))]
    data = yaml.safe_load(text)
    paths = [p for p, _ in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    if kind == "delete":
        parent = _get(data, path[:-1])
        del parent[path[-1]]
    elif kind == "retype":
        old = _get(data, path)
        _set(data, path, draw(st.sampled_from([v for v in _OTHER_VALUES if type(v) is not type(old)])))
    else:  # swap two scalar values
        leaves = [p for p in paths if not isinstance(_get(data, p), (dict, list))]
        path, other = draw(st.sampled_from(leaves)), draw(st.sampled_from(leaves))
        a, b = _get(data, path), _get(data, other)
        _set(data, path, b)
        _set(data, other, a)
    return spec, kind, yaml.safe_dump(data, sort_keys=False)


def _run(argv) -> tuple:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, err.getvalue()


def _files(directory: Path) -> dict:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


MUTATIONS = int(os.environ.get("ARCHSPEC_MUTATION_EXAMPLES", "120"))


@settings(max_examples=MUTATIONS, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations())
def test_mutated_shipped_specs_never_crash_and_never_write_on_error(mutation):
    spec, kind, text = mutation
    work = Path(tempfile.mkdtemp(dir=_WORK))
    (work / "specs" / "lib").mkdir(parents=True)
    for lib in LIBS:
        shutil.copy(ROOT / lib, work / lib)
    for other in SPECS:  # parents for extends:
        shutil.copy(ROOT / other, work / other)
    target = work / spec
    target.write_text(text)
    before = _files(work)
    out = work / "out"
    for argv in (["check", str(target)], ["check", "--format", "json", str(target)],
                 ["build", str(target), "-o", str(out)]):
        rc, err = _run(argv)
        assert rc in (0, 1), (argv, kind, rc, err)
        assert "internal error" not in err and "Traceback" not in err, (kind, err)
        if rc == 1 and argv[0] == "build":
            assert not out.exists(), "a failed build wrote files"
    after = _files(work)
    written = {k for k in after if k not in before or after[k] != before[k]}
    assert all(k.startswith("out/") for k in written), written
    shutil.rmtree(work)


# --- expressions (issue 11): bounded, and what Python computes ----------------------------------------

_LEAVES = st.one_of(st.integers(-10**6, 10**6).map(str), st.sampled_from(["0", "1", "8", "0.5", "2.5", "1e300"]),
                    st.sampled_from(["a", "b", "t", "true", "false", "none"]))
_BINARY = ["+", "-", "*", "/", "//", "%", "<", "<=", "==", "!=", ">", ">=", "and", "or"]


def _grow(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(_BINARY), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "not "]), children).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(children, min_size=2, max_size=3))
        .map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(st.sampled_from(["round", "int", "ceil", "floor"]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, st.sampled_from(["8", "1", "0", "-3", "2.5", "a"]),
                  st.sampled_from(["", ", min_value=4", ", none", ", b"])).map(
            lambda t: f"make_divisible({t[0]}, {t[1]}{t[2]})"),
        st.tuples(children, st.sampled_from([".real", ".__class__", "[0]", "(1)", " ** 99"])).map(
            lambda t: f"({t[0]}){t[1]}"),  # never part of the language
    )


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # the repr of long expressions
@settings(max_examples=int(os.environ.get("ARCHSPEC_EXPRESSION_EXAMPLES", "400")), deadline=None,
          derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.recursive(_LEAVES, _grow, max_leaves=24))
def test_expressions_are_bounded_and_compute_what_python_computes(text):
    """Any expression is refused with a located error (parse or evaluation), or gives a value within
    the bounds (ints at most 10^15, floats finite) that the generated module's Python computes too."""
    import ast
    import math

    from archspec.errors import ArchspecError, Loc
    from archspec.exprs import MAX_INT, evaluate, parse_expr, unparse

    env = {"a": 3, "b": 2.5, "t": True}
    at = Loc("spec.yaml", 4, 7)
    try:
        value = evaluate(parse_expr(text, at), env, at)
    except ArchspecError as exc:
        assert exc.loc is at, text
        assert not any(word in text for word in (".real", ".__class__", "[0]", " ** ")) or "not part of" in \
            exc.message or "unsupported" in exc.message or "not a function" in exc.message, (text, exc.message)
        return
    assert not any(word in text for word in (".real", ".__class__", "[0]", " ** ", ")(1)")), text
    if isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        assert abs(value) <= MAX_INT, text
    else:
        assert math.isfinite(value), text
    python = unparse(parse_expr(text, at))

    def make_divisible(v, divisor, min_value=None):
        least = divisor if min_value is None else min_value
        rounded = max(least, int(v + divisor / 2) // divisor * divisor)
        return rounded + divisor if rounded < 0.9 * v else rounded

    got = eval(compile(ast.parse(python, mode="eval"), "<generated>", "eval"),
               {"__builtins__": {"min": min, "max": max, "round": round, "int": int}, "math": math,
                "make_divisible": make_divisible, **env})
    assert got == value and type(got) is type(value), (text, python, got, value)
