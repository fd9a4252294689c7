"""How archspec's work grows with the size of a spec (issue 10, item 7): 1,000 / 10,000 / 100,000 items.

    python bench/scale.py            # every case, about two minutes on 2 cores
    python bench/scale.py --quick    # 1,000 and 10,000 only
    python bench/scale.py --only diff
    python bench/scale.py --count    # lines of Python each step runs, instead of seconds

Cases, each timed in a fresh child process (this file with ``--child``), archspec imported first
and the cyclic garbage collector off, as the command line runs:

* ``add``: one ``add:`` of N branches, compiled, generated and generated as a deploy module;
* ``edit``: a variant applying N ``edit:`` operations (replace, insert after, insert before,
  remove, in turn) to a parent of N named layers, compiled;
* ``diff``: two Sequentials of N steps that differ by a shift and a change every 100 steps,
  compiled, diffed and shown as text;
* ``diff-random``: two unrelated random Sequentials of N steps (nothing to align: the worst
  case for the alignment, which falls back to anchors; docs/performance.md).

Each case shows the whole command's work (compiling included) and the step that was quadratic
(naming the branches in generate and deploy; applying the edits; aligning and showing the diff),
timed alone (the least of 3 or 5 runs). The goal, for the step: each 10x more items costs at most
10x the time, i.e. t(10k) <= 10 t(1k) and t(100k) <= 100 t(1k). A reference line times plain
linear Python of a similar size, which shows what the caches do to linear code on this machine;
a step within 1.25 times the reference's ratios is marked "as linear code here". A spec of 100,000 items is larger
than archspec reads (``MAX_FILE_BYTES``, ``MAX_NODES``), so the children raise those two limits:
what is measured is the algorithms, not the limits. ``--count`` counts the lines of Python each
step runs instead (archspec and the standard library; about a minute): the work itself, which the
machine's caches and load do not bend. docs/performance.md records a run.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1_000, 10_000, 100_000)
CASES = ("add", "edit", "diff", "diff-random")
HEAD = "archspec: 1\nname: {name}\ninput: [3, 8, 8]\nnum_classes: 10\n"
TAIL = "  - flatten\n  - fc: linear(num_classes)\n"


# --- the specs -----------------------------------------------------------------------------------------

def add_spec(n: int) -> str:
    return HEAD.format(name="net") + "layers:\n  - add: [" + ", ".join(["[relu]"] * n) + "]\n" + TAIL


def edit_specs(n: int) -> tuple:
    parent = HEAD.format(name="net") + "layers:\n" + "".join(f"  - l{i}: relu\n" for i in range(n)) + TAIL
    ops = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            ops.append(f"  - {{replace: l{i}, with: [{{m{i}: identity}}]}}\n")
        elif kind == 1:
            ops.append(f"  - {{after: l{i}, insert: [{{a{i}: identity}}]}}\n")
        elif kind == 2:
            ops.append(f"  - {{before: l{i}, insert: ['maxpool2d(1)']}}\n")
        else:
            ops.append(f"  - {{remove: l{i}}}\n")
    child = "archspec: 1\nextends: parent.yaml\nname: variant\nedit:\n" + "".join(ops)
    return parent, child


def seq_spec(ops: list) -> str:
    return HEAD.format(name="net") + "layers:\n  - body: [" + ", ".join(ops) + "]\n" + TAIL


def diff_specs(n: int) -> tuple:
    a = ["identity" if i % 7 == 0 else "relu" for i in range(n)]
    b = ["maxpool2d(1)"] * 3 + [("maxpool2d(1)" if i % 100 == 50 else op) for i, op in enumerate(a)][:n - 3]
    return seq_spec(a), seq_spec(b)


def random_specs(n: int) -> tuple:
    rng = random.Random(n)
    pick = ("relu", "identity", "maxpool2d(1)", "avgpool2d(1)")
    return seq_spec([rng.choice(pick) for _ in range(n)]), seq_spec([rng.choice(pick) for _ in range(n)])


# --- one measurement, in a child -----------------------------------------------------------------------

def _setup(case: str, n: int, work: Path) -> tuple:
    """(the whole command's work, the step that was quadratic before issue 10), as functions."""
    from archspec.deploy import generate_deploy
    from archspec.diff import diff_compiled
    from archspec.generate import generate
    from archspec.load import _load_mapping, apply_edits
    from archspec.pipeline import compile_spec

    if case == "add":
        (work / "a.yaml").write_text(add_spec(n))
        c = compile_spec(str(work / "a.yaml"))

        def step():  # naming 100,000 branch outputs: out, identity, identity_2, ...
            generate(c)
            generate_deploy(c)
        return (lambda: (compile_spec(str(work / "a.yaml")), step())), step
    if case == "edit":
        parent, variant = edit_specs(n)
        (work / "parent.yaml").write_text(parent)
        (work / "a.yaml").write_text(variant)
        layers, edits = _load_mapping(str(work / "parent.yaml"))["layers"], _load_mapping(str(work / "a.yaml"))
        return (lambda: compile_spec(str(work / "a.yaml"))), (lambda: apply_edits(layers, edits["edit"], edits.loc))
    a, b = (diff_specs if case == "diff" else random_specs)(n)
    (work / "a.yaml").write_text(a)
    (work / "b.yaml").write_text(b)
    ca, cb = compile_spec(str(work / "a.yaml")), compile_spec(str(work / "b.yaml"))
    whole = (lambda: diff_compiled(compile_spec(str(work / "a.yaml")), compile_spec(str(work / "b.yaml"))).text())
    return whole, (lambda: diff_compiled(ca, cb).text())


def reference(n: int) -> None:
    """Plain Python of about the same size (20 small objects an item), for how this machine's
    caches bend a linear workload: its t(N)/t(1k) is what linear code gets here."""
    items = [{"i": i, "s": str(i), "l": [i, i]} for i in range(20 * n)]
    sum(len(x["s"]) + x["l"][1] for x in items)


def lines_run(fn) -> int:
    """Lines of Python run by ``fn()`` in archspec and the standard library (not third-party
    packages): work counted, independent of the machine (tests/test_bounds.py counts the same)."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        name = frame.f_code.co_filename
        if "site-packages" in name or not name.endswith(".py"):
            return None
        count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def child(case: str, n: int, rounds: int) -> dict:
    import gc

    import archspec.load

    archspec.load.MAX_FILE_BYTES = 1 << 30  # see the docstring: the algorithms, not the limits
    archspec.load.MAX_NODES = 10_000_000
    work = Path(tempfile.mkdtemp(prefix="archspec-scale-"))
    runs = {"reference": lambda: reference(n)} if case == "reference" else dict(zip(("whole", "step"), _setup(case, n, work)))
    gc.disable()  # as the command line runs (archspec.cli.entry)
    if rounds == 0:  # --count: executed lines of the step, after one run that fills the caches
        runs["step"]()
        return {"step": lines_run(runs["step"])}
    times: dict = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}  # the least disturbed run: the machine is shared


def measure(case: str, n: int, count: bool = False) -> dict:
    rounds = 0 if count else 5 if n <= 1_000 else 3
    proc = subprocess.run([sys.executable, __file__, "--child", case, str(n), str(rounds)], capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0:
        raise SystemExit(f"{case} {n}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


LABELS = {"add": "add: N branches", "edit": "N edit: operations", "diff": "diff, N steps", "diff-random": "diff, N random"}
WHAT = {"whole": "whole command", "step": "the step alone"}


def _row(label: str, times: list, ratios: list, verdict: str) -> None:
    print(f"  {label:<41}" + "".join(f"{t:>9.3f} s" for t in times) + "   "
          + ", ".join(f"{r:6.1f}" for r in ratios) + f"   {verdict}")


def count_lines(cases: list, sizes: tuple) -> int:
    print(f"  {'lines of Python run by the step':<41}" + "".join(f"{n:>13,}" for n in sizes) + "   c(N) / c(1,000)")
    missed = 0
    for case in cases:
        counts = [measure(case, n, count=True)["step"] for n in sizes]
        ratios = [c / counts[0] for c in counts[1:]]
        ok = all(r <= n / sizes[0] for r, n in zip(ratios, sizes[1:]))
        missed += not ok
        print(f"  {LABELS[case]:<41}" + "".join(f"{c:>13,}" for c in counts) + "   "
              + ", ".join(f"{r:6.1f}" for r in ratios) + ("   met" if ok else "   MISSED"))
    return 1 if missed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1,000 and 10,000 items only")
    p.add_argument("--only", default=",".join(CASES), help="comma-separated cases: " + ", ".join(CASES))
    p.add_argument("--count", action="store_true", help="count the lines of Python each step runs instead of timing")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        case, n, rounds = args.child
        print(json.dumps(child(case, int(n), int(rounds))))
        return 0
    sizes = SIZES[:2] if args.quick else SIZES
    if args.count:
        return count_lines(args.only.split(","), sizes)
    goals = [n / sizes[0] for n in sizes[1:]]
    print(f"  {'':<41}" + "".join(f"{n:>11,}" for n in sizes) + "   t(N) / t(1,000); goal: at most N / 1,000")
    ref = [measure("reference", n)["reference"] for n in sizes]
    ref_ratios = [t / ref[0] for t in ref[1:]]
    _row("reference, plain Python, linear", ref, ref_ratios, "")
    missed = 0
    for case in args.only.split(","):
        results = [measure(case, n) for n in sizes]
        for name in ("whole", "step"):
            times = [r[name] for r in results]
            ratios = [t / times[0] for t in times[1:]]
            verdict = ""
            if name == "step":
                verdict = ("met" if all(r <= g for r, g in zip(ratios, goals)) else
                           "as linear code here" if all(r <= 1.25 * f for r, f in zip(ratios, ref_ratios)) else "MISSED")
            missed += verdict == "MISSED"
            _row(f"{LABELS[case]}, {WHAT[name]}", times, ratios, verdict)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
