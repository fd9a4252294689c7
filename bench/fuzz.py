"""Differential fuzzing at a large budget (issue 10): the figure recorded in docs/errors.md.

    python bench/fuzz.py                 # 5,000 specs, about 10 minutes on 2 loaded cores
    python bench/fuzz.py -n 500 --show 3 # fewer, and print the first 3 specs of each failure class
    python bench/fuzz.py --json          # the counts as JSON

Draws random valid specs from the whole language with tests/fuzzing.py (the strategy the test
suite runs a few hundred of), builds each with the training and the deploy code generator, and
verifies both against the static analysis and the reference interpreter, as `build --verify`
does. Prints: specs generated; specs compiled (both modules generated); verified; numerical or
runtime mismatches by class (in-place aliasing, names, both, other); internal errors; tracebacks;
refusals by message (a refusal of a name, or of a spec that is valid with plain names).
Derandomized: the same budget gives the same specs.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=5000, help="number of specs (default 5000)")
    p.add_argument("--show", type=int, default=0, metavar="K", help="print K specs of each failure class")
    p.add_argument("--match", default="", metavar="TEXT", help="with --show: only outcomes whose message contains TEXT")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = p.parse_args()

    import torch
    from hypothesis import HealthCheck, Phase, given, settings

    from fuzzing import cases, check, message_class

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    outcomes = []
    work = Path(tempfile.mkdtemp(prefix="archspec-fuzz-"))
    start = time.perf_counter()

    @settings(max_examples=args.n, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def run(case):
        outcomes.append(check(case, work / "case"))
        if len(outcomes) % 500 == 0:
            print(f"  {len(outcomes)} specs, {time.perf_counter() - start:.0f} s", file=sys.stderr)

    run()
    seconds = time.perf_counter() - start
    kinds = collections.Counter(o.kind for o in outcomes)
    mismatch = collections.Counter(o.cls for o in outcomes if o.kind == "mismatch")
    by_message = collections.Counter((o.cls or o.kind, message_class(o.message)) for o in outcomes
                                     if o.kind in ("mismatch", "internal", "traceback") and o.cls not in ("names", "in-place", "in-place+names"))
    refusals = collections.Counter((o.cls, message_class(o.message)) for o in outcomes if o.kind in ("refused", "unlocated"))
    figure = {
        "specs generated": len(outcomes),
        "specs compiled": kinds["ok"] + kinds["mismatch"],
        "verified (generated == interpreter == deploy)": kinds["ok"],
        "mismatches": kinds["mismatch"],
        "mismatches by class": dict(mismatch),
        "internal errors": kinds["internal"],
        "tracebacks": kinds["traceback"],
        "refusals (located, exit 1)": kinds["refused"],
        "refusals without a line": kinds["unlocated"],
        "refusals of a name": sum(n for (cls, _), n in refusals.items() if cls == "names"),
        "refusals of a spec valid with plain names": sum(n for (cls, _), n in refusals.items() if cls == "valid spec"),
        "seconds": round(seconds),
    }
    if args.json:
        figure["other failures by message"] = {f"{c}: {m}": n for (c, m), n in by_message.most_common()}
        figure["refusals by message"] = {f"{c}: {m}": n for (c, m), n in refusals.most_common()}
        print(json.dumps(figure, indent=2))
    else:
        for key, value in figure.items():
            print(f"{key:48} {value}")
        print("\nfailures outside the in-place and names classes, by message:")
        for (cls, message), n in by_message.most_common():
            print(f"{n:6}  {cls}: {message}")
        print("\nrefusals by message:")
        for (cls, message), n in refusals.most_common(25):
            print(f"{n:6}  {cls}: {message}")
    if args.show:
        shown = collections.Counter()
        for o in outcomes:
            key = (o.kind, o.cls)
            if o.kind != "ok" and shown[key] < args.show and args.match in o.message:
                shown[key] += 1
                print("\n=====", o.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
