"""The roofline estimate (archspec/roofline.py) against torch.profiler, layer by layer, on this CPU.

    python bench/roofline.py                                   # inception_v3 and resnet50, batch 8
    python bench/roofline.py --specs resnet50 --batch 32 --rounds 9 --device devices/cpu-epyc-2core.yaml

Runs the generated module in eval under torch.no_grad() with the profiler on, ``--rounds`` times
after a warm-up, and compares the estimate with each layer's median time, and with its minimum:
on a machine shared with other work the median also measures the sharing (a parallel op waits for
a descheduled thread for a whole time slice), the minimum much less. Layers are matched to the profiler's top-level
ops by order: archspec knows the order the generated forward runs the graph's nodes
(``memory.execution_order``) and how many top-level ops each node calls (one, the k-1 additions of
a k-way sum, none for a functional identity). Reports the Spearman rank correlation of estimated
and measured per-layer times (goal >= 0.8), the estimated and measured totals (goal: within 2x),
and the layers the estimate gets most wrong.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def ranks(values: list) -> list:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list, b: list) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5


def _calls(node) -> int:
    """Top-level profiler ops a node runs in eval."""
    return len(node.inputs) - 1 if node.op == "add" else 1


def measure_layers(c, batch: int, rounds: int) -> dict:
    """node name -> [seconds in each of ``rounds`` profiled eval forwards]."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from archspec.memory import execution_order
    from archspec.verify import import_generated, model_class

    module = import_generated(os.path.join(ROOT, "generated", c.name + ".py"))
    cls = model_class(module, c)
    torch.manual_seed(0)
    model = cls(num_classes=c.expanded.num_classes, **({"aux_logits": False} if c.expanded.aux else {})).eval()
    x = torch.randn(batch, *c.graph.input_shape)
    order = execution_order(c)
    times: dict = {n.name: [] for n in order}
    with torch.no_grad():
        model(x)  # warm-up: oneDNN picks and caches its kernels
        for _ in range(rounds):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(x)
            top = [e for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")]
            want = sum(_calls(n) for n in order)
            if len(top) != want:
                raise SystemExit(f"{c.name}: the profiler saw {len(top)} top-level ops, the graph says {want}")
            i = 0
            for n in order:
                k = _calls(n)
                times[n.name].append(sum(e.cpu_time_total for e in top[i:i + k]) / 1e6)
                i += k
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--specs", nargs="+", default=["inception_v3", "resnet50"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--device", default="cpu-epyc-2core")
    p.add_argument("--worst", type=int, default=5, help="list the layers whose estimate is furthest off")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's, every core)")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from archspec.pipeline import compile_spec
    from archspec.roofline import estimate, load_device

    device = load_device(args.device)
    for spec in args.specs:
        c = compile_spec(os.path.join(ROOT, "specs", spec + ".yaml"))
        est = estimate(c, device, args.batch)
        runs = measure_layers(c, args.batch, args.rounds)
        nodes = [n for n in runs if est.layers[n]["time_s"] > 0]
        e = [est.layers[n]["time_s"] for n in nodes]
        total_e = sum(e)
        print(f"{spec}, batch {args.batch}, {device.name}, {args.rounds} rounds: {len(nodes)} layers with an estimate "
              f"({len(runs) - len(nodes)} views/identities left out); estimated forward {total_e * 1e3:.1f} ms")
        for stat in ("median", "min"):
            got = {n: statistics.median(v) if stat == "median" else min(v) for n, v in runs.items()}
            m = [got[n] for n in nodes]
            rho = spearman(e, m)
            total_m = sum(got.values())
            ratio = total_m / total_e
            print(f"  per-layer {stat}s: Spearman {rho:.3f} (goal >= 0.8: {'met' if rho >= 0.8 else 'missed'}); "
                  f"measured {total_m * 1e3:.1f} ms, measured / estimated = {ratio:.2f} "
                  f"(goal within 2x: {'met' if 0.5 <= ratio <= 2 else 'missed'})")
            for kind in ("compute", "memory"):
                sel = [n for n in nodes if est.layers[n]["bound"] == kind]
                if sel:
                    se, sm = sum(est.layers[n]["time_s"] for n in sel), sum(got[n] for n in sel)
                    print(f"    {kind}-bound layers: {len(sel)}, estimated {se * 1e3:.1f} ms, measured {sm * 1e3:.1f} ms "
                          f"(x{sm / se:.2f})")
            off = sorted(nodes, key=lambda n: -abs((got[n] or 1e-9) / est.layers[n]["time_s"]))[:args.worst]
            for n in off:
                print(f"    {n:<40} {c.graph.node(n).op:<20} estimated {est.layers[n]['time_s'] * 1e6:9.1f} us, "
                      f"measured {got[n] * 1e6:9.1f} us")

if __name__ == "__main__":
    main()
