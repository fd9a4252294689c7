"""Differential fuzzing (issue 10): random valid specs from the whole language, each compiled,
generated, imported and compared with the reference interpreter, in eval and training, with its
deploy build (tests/fuzzing.py says what is drawn and how an outcome is classified).

The cases run once per session (``outcomes``), derandomized; ``ARCHSPEC_FUZZ_EXAMPLES`` sets how
many (bench/fuzz.py runs thousands and prints the figure recorded in docs/errors.md).

* Every refusal is a located spec error through the command line (exit 1), never an internal
  error or a traceback; every other failure is one of the bugs listed in ``KNOWN`` (found by this
  fuzzer, each to be fixed and then removed from the list). Issue 10's in-place aliasing and name
  clashes (classes 1 and 2) are fixed and are no longer tolerated.
* generated == interpreter == deploy for every spec (every refusal is of a name: the hostile pool's).
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from archspec.ops import OPS, USER_OPS
from fuzzing import cases, check

torch = pytest.importorskip("torch")

EXAMPLES = int(os.environ.get("ARCHSPEC_FUZZ_EXAMPLES", "300"))

# Failures the fuzzer finds that are neither in-place aliasing nor names: message fragment -> the bug.
# Empty: the four it found (issue 10) are fixed (issue 11); a new one goes here until it is.
KNOWN: dict = {}


def known(outcome) -> bool:
    return any(fragment in outcome.message for fragment in KNOWN)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is several times faster than two on a loaded machine

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def run(case):
        results.append(check(case, work / "case"))

    try:
        run()
    finally:
        torch.set_num_threads(threads)
    return results


def _show(bad: list) -> str:
    return f"{len(bad)} cases, the first:\n" + "\n".join(o.describe() for o in bad[:2])


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_every_refusal_is_located_and_every_failure_is_a_known_bug(outcomes):
    """In-place aliasing and names (classes 1 and 2) are fixed: a spec refused for a name is refused
    with a located error, and no module differs from the interpreter but by a bug of ``KNOWN``."""
    bad = [o for o in outcomes if (o.kind not in ("ok", "refused") or o.cls == "valid spec") and not known(o)]
    assert not bad, _show(bad)


def test_the_cases_cover_the_whole_language(outcomes):
    seen = set().union(*(o.case.features for o in outcomes))
    ops = set(USER_OPS)  # a new op of the catalog must be drawn too
    constructs = {"concat", "add", "mul", "nested concat", "nested add", "nested mul", "split in concat", "split in add",
                  "split in mul", "gate branch in mul", "identity branch in mul", "identity branch in add", "identity branch in concat",
                  "single-item branch", "Sequential branch", "downsampling branches", "relu first in a branch",
                  "Sequential", "nested Sequential", "repeat", "block in a Sequential", "if", "block", "block reused",
                  "aux", "aux after:", "aux block", "transforms", "extends", "edit", "argument override", "use:",
                  "long-form argument", "arithmetic", "grouped conv", "hostile name", "functional op", "named op",
                  "model argument int", "model argument size", "model argument float", "model argument bool",
                  "block argument int", "block argument size", "block argument float", "block argument bool",
                  # issue 11: expressions, structure, op arguments, stock libraries
                  "in_channels", "in_h", "function expression", "comparison", "conditional group",
                  "conditional group in a Sequential", "conditional branch", "if on a merge", "named repeat",
                  "for table", "for table in a Sequential", "loop variable in an argument", "repeat count of an instance",
                  "op argument", "op argument in a Sequential", "block argument op", "stock use:",
                  "named Sequential entries"}
    in_sequential = {f"{op} in a Sequential" for op in ops if OPS[op].module is not None and not OPS[op].parameter}
    assert {*ops, *in_sequential, *constructs} - seen == set()
    assert sum(o.kind == "ok" for o in outcomes) >= len(outcomes) // 4  # most specs get as far as running


def test_generated_equals_interpreter_equals_deploy(outcomes):
    bad = [o for o in outcomes if o.kind != "ok" and not (o.kind == "refused" and o.cls == "names")]
    assert not bad, _show(bad)
