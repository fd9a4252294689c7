"""Static memory (archspec/memory.py) against torch for every stock spec, with torchinfo beside it.

    python bench/memory.py                         # batch 1 and 32, every stock spec (about 30 min)
    python bench/memory.py --batch 1 --specs resnet50 googlenet --json out.json

For each spec and batch, in a fresh process each (so that one network's memory does not linger
into the next): the eval forward's peak and a training step's saved-for-backward bytes and peak
(SGD), static and measured by archspec/measure.py (the dispatch-mode tracker, and the profiler's
allocations where --profiler allows); torchinfo's "Forward/backward pass size" for the same model
and batch, and its error against the bytes autograd really keeps. Prints a markdown table
(docs/performance.md holds a recorded one).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def child(spec: str, batch: int, profiler: bool) -> dict:
    import torch

    from archspec import measure as oracle
    from archspec.memory import measure
    from archspec.pipeline import compile_spec
    from archspec.verify import import_generated, model_class

    torch.manual_seed(0)
    c = compile_spec(os.path.join(ROOT, "specs", spec + ".yaml"))
    module = import_generated(os.path.join(ROOT, "generated", c.name + ".py"))
    cls = model_class(module, c)
    nc = c.expanded.num_classes
    x = torch.randn(batch, *c.graph.input_shape)
    target = torch.randint(0, nc, (batch,))
    real = measure(c, batch, optimizer="sgd")
    mode = measure(c, batch, optimizer="sgd", dispatch_mode=True)
    out = {"spec": spec, "batch": batch,
           "static": {"eval_peak": mode.inference_peak, "saved": real.saved_bytes,
                      "step_peak": real.training_peak, "step_peak_mode": mode.training_peak}}
    t = time.perf_counter()
    model = cls(num_classes=nc, **({"aux_logits": False} if c.expanded.aux else {}))
    measured = {"eval_peak": oracle.eval_peak(model, x)}
    del model
    model = cls(num_classes=nc)
    loss = module.loss if c.expanded.aux else torch.nn.functional.cross_entropy  # loss(): aux heads only
    try:
        step = oracle.train_step(model, x, target, loss, "sgd")
        measured.update(saved=step["saved"], step_peak_mode=step["peak"])
        if profiler:
            measured["step_peak"] = oracle.profiled_peak(model, x, target, loss, "sgd")
    except ValueError as exc:  # BatchNorm in training with one value per channel
        measured["error"] = str(exc).split("\n")[0]
    import torchinfo

    size = (batch, *c.graph.input_shape)
    try:
        stats = torchinfo.summary(model, input_size=size, verbose=0, mode="train", device="cpu")
        out["torchinfo_mode"] = "train"
    except RuntimeError:  # the same BatchNorm refusal: torchinfo in eval (no aux heads) instead
        stats = torchinfo.summary(model, input_size=size, verbose=0, mode="eval", device="cpu")
        out["torchinfo_mode"] = "eval"
    out["torchinfo"] = stats.total_output_bytes
    out["measured"] = measured
    out["seconds"] = round(time.perf_counter() - t, 1)
    return out


def _mb(v) -> str:
    return "n/a" if v is None else f"{v / 1e6:,.2f}"


def table(rows: list) -> str:
    """Static figures in MB, "=" where torch measured the same number of bytes."""
    head = ("| spec | batch | eval peak (MB) | saved for backward (MB) | step peak, dispatch mode (MB) | "
            "step peak, profiler (MB) | torchinfo F/B (MB) | torchinfo error vs saved |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    out = [head]
    for r in rows:
        s, m = r["static"], r["measured"]

        def pair(key):
            if key in m:
                return f"{_mb(s[key])} " + ("=" if m[key] == s[key] else f"(torch {_mb(m[key])})")
            if "error" in m:
                return f"{_mb(s[key])} (torch refuses)"
            return f"{_mb(s[key])} (not measured)"

        err = (r["torchinfo"] - s["saved"]) / s["saved"]
        out.append(f"| {r['spec']} | {r['batch']} | {pair('eval_peak')} | {pair('saved')} | {pair('step_peak_mode')} | "
                   f"{pair('step_peak')} | {_mb(r['torchinfo'])}{' (eval)' if r['torchinfo_mode'] == 'eval' else ''} | "
                   f"{err:+.0%} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--specs", nargs="+")
    p.add_argument("--profiler-max-batch", type=int, default=1,
                   help="measure with the profiler too up to this batch (default 1: it is slow)")
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--table", metavar="JSON", help="print the table of rows written by --json, and stop")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.table:
        with open(args.table, encoding="utf-8") as f:
            print(table(json.load(f)))
        return
    if args.child:
        spec, batch, profiler = args.child
        print(json.dumps(child(spec, int(batch), profiler == "1")))
        return
    specs = args.specs or sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "specs")) if f.endswith(".yaml"))
    rows = []
    for batch in args.batch:
        for spec in specs:
            prof = "1" if batch <= args.profiler_max_batch else "0"
            done = subprocess.run([sys.executable, __file__, "--child", spec, str(batch), prof], capture_output=True,
                                  text=True)
            if done.returncode:
                print(f"{spec} batch {batch}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{spec} batch {batch}: {row['seconds']} s", file=sys.stderr, flush=True)
            if args.json:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(rows, f, indent=1)
    print(table(rows))


if __name__ == "__main__":
    main()
