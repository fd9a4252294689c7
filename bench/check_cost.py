"""What memory and time cost `archspec check` (no torch).

    python bench/check_cost.py --baseline /path/to/a/checkout/of/main     # whole process, both checkouts
    python bench/check_cost.py                                              # in process only

Whole process: `python -m archspec check specs/inception_v3.yaml --depth 1` from this checkout and
from the baseline checkout, interleaved (A, B, A, B, ...), median of each; the goal is a growth
under 10% for the default check, which computes no memory. Then the same check with
`--batch 32 --train --optimizer adam --device cpu-epyc-2core`, and in process: compile_spec
alone, + memory.measure (eval; training step), + roofline.estimate, medians of repeated calls.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = "specs/inception_v3.yaml"
FLAGS = ["--batch", "32", "--train", "--optimizer", "adam", "--device", "cpu-epyc-2core"]


def _process(checkout: str, args: list, env: dict) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "archspec", "check", os.path.join(ROOT, SPEC), "--depth", "1", *args],
                   cwd=checkout, env={**env, "PYTHONPATH": checkout}, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", help="a checkout to compare with (e.g. a worktree of main)")
    p.add_argument("--rounds", type=int, default=21)
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp()  # bytecode cached, as an installed package has it
    if args.baseline:
        runs = {"baseline": [], "this": [], "this, with memory and time": []}
        for checkout in (args.baseline, ROOT, ROOT):
            _process(checkout, [], env)  # warm the bytecode cache
        for _ in range(args.rounds):
            runs["baseline"].append(_process(args.baseline, [], env))
            runs["this"].append(_process(ROOT, [], env))
            runs["this, with memory and time"].append(_process(ROOT, FLAGS, env))
        base = statistics.median(runs["baseline"])
        for name, v in runs.items():
            m = statistics.median(v)
            print(f"  check {SPEC} --depth 1, {name:<28} {m * 1e3:7.1f} ms   {m / base:5.3f} x baseline")
        growth = statistics.median(runs["this"]) / base - 1
        print(f"  default check grows by {growth:+.1%}   goal < 10%   {'met' if growth < 0.10 else 'missed'}")
    sys.path.insert(0, ROOT)
    from archspec.memory import measure
    from archspec.pipeline import compile_spec
    from archspec.roofline import estimate, load_device

    device = load_device("cpu-epyc-2core")
    steps = {
        "compile_spec (load to analyse)": lambda c: None,
        "+ memory, eval at batch 32": lambda c: measure(c, 32),
        "+ memory, training step (adam)": lambda c: measure(c, 32, optimizer="adam"),
        "+ roofline estimate": lambda c: estimate(c, device, 32),
    }
    for name, fn in steps.items():
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            fn(compile_spec(os.path.join(ROOT, SPEC)))
            times.append(time.perf_counter() - t)
        print(f"  in process, {name:<34} {statistics.median(times) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
