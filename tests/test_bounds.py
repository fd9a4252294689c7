"""Bounds on work (issue 10, class 7), counted rather than timed: how many Python lines run as an
input grows 4x, pieces a transform may build, MACs --verify may run, and the alignment that
replaced difflib for long sequences. Timings live in bench/scale.py.
"""
from __future__ import annotations

import importlib
import random
import sys

import pytest

from archspec.diff import match
from archspec.errors import ArchspecError, flatten
from archspec.pipeline import compile_spec

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import scale  # noqa: E402  (the bench's spec generators: the same inputs as the timings)

load = importlib.import_module("archspec.load")  # the package exports a function of that name


# lines of Python run in archspec and the standard library (difflib, ...), not in third-party packages
# (jinja2's template machinery costs the same for any input): the bench's count, the same work
lines_run = scale.lines_run


def growth(make, small: int) -> float:
    """lines_run of the work for 4 * small items over that for small items (4 when linear, 16 when
    quadratic), each run once before it is counted (the first run loads templates and fills caches)."""
    runs = [make(small), make(4 * small)]
    for run in runs:
        run()
    return lines_run(runs[1]) / lines_run(runs[0])


def test_the_line_count_tells_linear_from_quadratic():
    assert growth(lambda n: lambda: [i for i in range(n) for _ in range(3)], 1000) == pytest.approx(4, rel=0.01)
    assert growth(lambda n: lambda: [[j for j in range(i)] for i in range(n)], 300) > 12


def _spec(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_an_add_of_many_branches_is_named_in_linear_work(tmp_path):
    # before: every branch output searched out, identity, identity_2, ... from the start (x9.4 for x4 branches)
    from archspec.deploy import generate_deploy
    from archspec.generate import generate

    def work(n):
        c = compile_spec(_spec(tmp_path, f"add{n}.yaml", scale.add_spec(n)))
        return lambda: (generate(c), generate_deploy(c))

    assert growth(work, 300) < 4.5
    source = generate(compile_spec(_spec(tmp_path, "add3.yaml", scale.add_spec(3))))
    assert "        x = out + identity + identity_2  # N x 3 x 8 x 8\n" in source


def test_edits_are_applied_in_linear_work(tmp_path):
    def work(n):
        parent, variant = scale.edit_specs(n)
        (tmp_path / "parent.yaml").write_text(parent)
        layers = load._load_mapping(_spec(tmp_path, "parent.yaml", parent))["layers"]
        child = load._load_mapping(_spec(tmp_path, "variant.yaml", variant))
        return lambda: load.apply_edits(layers, child["edit"], child.loc)

    assert growth(work, 500) < 4.5


def test_diff_of_long_sequentials_is_linear_work(tmp_path):
    # before: difflib on 2,400 steps ran 31 times the lines of 600 steps
    from archspec.diff import diff_compiled

    def work(n):
        a, b = scale.diff_specs(n)
        ca, cb = compile_spec(_spec(tmp_path, f"a{n}.yaml", a)), compile_spec(_spec(tmp_path, f"b{n}.yaml", b))
        return lambda: diff_compiled(ca, cb).text()

    assert growth(work, 600) < 4.5


# --- edits keep their meaning ------------------------------------------------------------------------

def _reference_edits(layers: list, ops: list) -> list:
    """The edit semantics as a plain list (the code before issue 10): the first layer of a name."""
    out = list(layers)
    for op in ops:
        names = [load.item_name(x) for x in out]
        key = next(k for k in ("replace", "remove", "after", "before") if k in op)
        if op[key] not in names:
            continue
        i = names.index(op[key])
        new = op.get("with", op.get("insert", []))
        if key == "replace":
            out[i:i + 1] = new
        elif key == "remove":
            del out[i]
        else:
            out[i + (key == "after"):i + (key == "after")] = new
    return out


def test_edits_match_the_list_semantics_with_shared_names():
    rng = random.Random(7)
    for _ in range(600):  # about 180 apply cleanly and are compared; the rest name a missing layer
        pool = ["a", "b", "c", "d"]  # few names: layers share them, as under complementary if:
        layers = [{rng.choice(pool): "relu"} for _ in range(rng.randrange(1, 8))]
        ops = []
        for _ in range(rng.randrange(1, 10)):
            key = rng.choice(["replace", "remove", "after", "before"])
            op = {key: rng.choice(pool)}
            if key in ("replace", "after", "before"):
                op["with" if key == "replace" else "insert"] = [{rng.choice(pool): f"conv2d({rng.randrange(9)}, 1)"}
                                                               for _ in range(rng.randrange(0, 3))]
            ops.append(op)
        want = _reference_edits(layers, ops)
        yaml_ops = load.parse_yaml(repr(ops).replace("'", '"'), "edits.yaml")
        try:
            got = load.apply_edits(layers, yaml_ops, None)
        except ArchspecError:
            continue  # an edit naming no layer is an error here; the reference skipped it
        assert list(got) == want


def test_finding_layers_that_share_a_name_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MAX_EDIT_SCAN", 50)
    parent = ("archspec: 1\nname: net\ninput: [3, 8, 8]\nnum_classes: 10\nlayers:\n"
              + "".join(f"  - l{i}: relu\n" for i in range(40)) + "  - {x: relu, if: true}\n  - {x: relu, if: false}\n"
              + "  - flatten\n  - fc: linear(num_classes)\n")
    _spec(tmp_path, "parent.yaml", parent)
    variant = _spec(tmp_path, "variant.yaml", "archspec: 1\nextends: parent.yaml\nedit:\n" + "  - after: x\n    insert: [relu]\n" * 3)
    with pytest.raises(ArchspecError) as info:  # the first edit visits 40 layers, the second 40 more
        compile_spec(variant)
    assert [(e.loc.line, e.loc.col, e.message) for e in flatten(info.value)] == [
        (6, 12, "edit: more than 50 layers visited to find layers that share a name ('x'); give them distinct names")]


# --- the alignment -----------------------------------------------------------------------------------

def _lcs(a: list, b: list) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev, row = row, [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
    return row[-1]


def _check_blocks(a: list, b: list, blocks: list) -> int:
    assert blocks[-1] == (len(a), len(b), 0)
    i = j = 0
    for x, y, size in blocks[:-1]:
        assert size > 0 and x >= i and y >= j and a[x:x + size] == b[y:y + size]
        i, j = x + size, y + size
    return sum(size for *_, size in blocks)


@pytest.mark.parametrize("work", [10 ** 6, 0])  # Myers' shortest script, and the anchors past its budget
def test_long_sequences_are_aligned_correctly(monkeypatch, work):
    monkeypatch.setattr(match, "SMALL", 0)
    monkeypatch.setattr(match, "WORK", work)
    rng = random.Random(3)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randrange(0, 30))]
        b = [rng.choice("abcd") for _ in range(rng.randrange(0, 30))] if rng.random() < 0.5 else \
            [x for x in a if rng.random() < 0.9] + [rng.choice("ab") for _ in range(rng.randrange(3))]
        matched = _check_blocks(a, b, match.matching_blocks(a, b))
        if work:
            assert matched == _lcs(a, b)  # shortest edit script: the longest common subsequence
        rebuilt = []
        for tag, i1, i2, j1, j2 in match.opcodes(a, b):
            assert (tag == "equal") == (a[i1:i2] == b[j1:j2] and i2 > i1)
            rebuilt += b[j1:j2]
        assert rebuilt == b


def test_short_sequences_are_aligned_as_difflib_aligns_them():
    import difflib

    a, b = list("abxcdeyfg" * 20), list("abcdezfgq" * 20)
    assert match.opcodes(a, b) == difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()


def test_a_shift_in_a_long_sequence_is_found(monkeypatch):
    a = ["relu" if i % 7 else "identity" for i in range(3000)]
    b = ["pool"] * 3 + a
    assert match.matching_blocks(a, b) == [(0, 3, 3000), (3000, 3003, 0)]


# --- transforms and --verify --------------------------------------------------------------------------

def test_a_transform_builds_at_most_max_pieces(tmp_path, monkeypatch):
    import archspec.transforms.rewrite as rewrite

    monkeypatch.setattr(rewrite, "MAX_PIECES", 6)
    spec = ("archspec: 1\nname: net\ninput: [3, 32, 32]\nnum_classes: 10\nlayers:\n  - f:\n"
            "      - conv2d(8, 7, padding=3)\n      - conv2d(8, KERNEL, padding=PAD)\n  - flatten\n  - fc: linear(num_classes)\n"
            "transforms:\n  - factorize: stack3x3\n")
    ok = compile_spec(_spec(tmp_path, "ok.yaml", spec.replace("KERNEL", "7").replace("PAD", "3")))
    assert len(ok.rewrites) == 2  # 3 + 3 pieces: at the limit
    with pytest.raises(ArchspecError) as info:
        compile_spec(_spec(tmp_path, "over.yaml", spec.replace("KERNEL", "9").replace("PAD", "4")))
    assert [(e.loc.line, e.message) for e in flatten(info.value)] == [
        (8, "factorize stack3x3 (transforms[0]): rewriting 'conv2d(8, 9, padding=4)' would make 4 more convolutions "
            "(7 in all); a transform makes at most 6")]


def test_verify_refuses_more_macs_than_its_limit(tmp_path, capsys):
    from archspec import cli
    from archspec.verify import MAX_VERIFY_MACS

    # a 50x50 kernel over a 1000x1000 image: 480,000 weights, 116 million activations, 434 GMACs
    path = _spec(tmp_path, "wide.yaml", "archspec: 1\nname: wide\ninput: [3, 1000, 1000]\nnum_classes: 10\nlayers:\n"
                 "  - conv: conv2d(64, 50)\n  - pool: adaptive_avgpool2d(1)\n  - flatten\n  - fc: linear(num_classes)\n")
    assert compile_spec(path).analysis.totals.macs == 434_112_480_640 > MAX_VERIFY_MACS
    assert cli.main(["build", "--verify", "-o", str(tmp_path / "out"), path]) == 1
    assert capsys.readouterr().err.endswith(
        f"{path}: error: wide needs 434,112,480,640 MACs per image; --verify refuses networks above "
        "100,000,000,000 (the static analysis does not need to run it)\n")
