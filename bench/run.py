"""archspec's performance goals (issue 7), measured side by side in one run.

    python bench/run.py            # everything, about two minutes on 2 cores
    python bench/run.py --quick    # fewer rounds (a smoke test of the bench itself)
    python bench/run.py --only check,forward

Every figure is a median of interleaved runs or a ratio of two such medians, so that both sides of
a comparison see the same machine load. Each measurement runs in its own child process (this file
with ``--child``), so that nothing one measurement imports or allocates affects another. Needs torch,
torchvision and torchinfo (``pip install -e .[test,bench]``); docs/performance.md explains each goal
and records a run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SECTIONS = ("check", "analysis", "scaling", "refuse", "build", "forward")
SCALING_BLOCKS = (10, 100, 1000)


# --- the child processes -----------------------------------------------------------------------------

def child_analysis(rounds: int) -> dict:
    """In-process analysis of inception_v3, load to totals (compile_spec), warm."""
    from archspec.pipeline import compile_spec

    spec = str(ROOT / "specs" / "inception_v3.yaml")
    t = time.perf_counter()
    compile_spec(spec)
    first = time.perf_counter() - t
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        compile_spec(spec)
        times.append(time.perf_counter() - t)
    return {"first": first, "median": statistics.median(times)}


def child_compile(spec: str, memory: bool) -> dict:
    """One compile of a (synthetic) spec in a fresh process, archspec already imported and warm,
    with the cyclic garbage collector off as `archspec check` runs (archspec.cli.entry)."""
    import gc
    import tracemalloc

    from archspec.pipeline import compile_spec

    gc.disable()

    compile_spec(str(ROOT / "specs" / "googlenet.yaml"))  # imports inside compile_spec, first-call costs
    if memory:
        tracemalloc.start()
    t = time.perf_counter()
    c = compile_spec(spec)
    elapsed = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] if memory else None
    return {"seconds": elapsed, "peak": peak, "nodes": c.graph.number_of_nodes(), "params": c.analysis.totals.params}


def child_refuse(paths: list) -> dict:
    """Seconds until each hostile spec is refused, in one warm process (the tests bound the work
    these take in counts; the times live here)."""
    import gc

    from archspec.errors import ArchspecError
    from archspec.pipeline import compile_spec

    gc.disable()
    compile_spec(str(ROOT / "specs" / "googlenet.yaml"))
    out = {}
    for path in paths:
        t = time.perf_counter()
        try:
            compile_spec(path)
        except ArchspecError:
            out[path] = time.perf_counter() - t
        else:
            raise SystemExit(f"bench: {path} was not refused")
    return out


def child_check(spec: str) -> None:
    """`archspec check SPEC --depth 1` as the console script runs it."""
    from archspec.cli import entry

    sys.argv = ["archspec", "check", spec, "--depth", "1"]
    entry()


def child_dicts(blocks: int) -> dict:
    """A reference for the scaling goal: build and walk plain dicts, a few per node, for as many
    nodes as the synthetic spec has (no archspec). It shows what CPython and the CPU caches do to
    per-node work as the data outgrows the caches."""
    import gc

    gc.disable()
    n = 23 * blocks + 4
    t = time.perf_counter()
    nodes = {}
    for i in range(n):
        nodes[f"Mixed_{i // 23}.branch{i % 23}.conv"] = {"op": "conv2d", "inputs": [i - 1], "attrs": {"k": 1},
                                                         "path": "p", "part": "main", "loc": None, "module": True}
    modules = {}
    for key, d in nodes.items():
        d["shape"], d["params"], d["macs"], d["rf"] = (64, 35, 35), 1, 2, (1, 1, 1, 1)
        modules[key] = {"type": d["op"], "params": 0, "macs": 0, "output_shape": d["shape"]}
    for key, d in nodes.items():
        modules[key]["params"] += d["params"]
    return {"seconds": time.perf_counter() - t}


def child_torchinfo() -> None:
    """What a user does today to see a network's shapes and counts: torch + the model + torchinfo."""
    import importlib.util

    import torch  # noqa: F401  (part of the cost being measured)
    import torchinfo

    spec = importlib.util.spec_from_file_location("inception_v3", ROOT / "generated" / "inception_v3.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torchinfo.summary(module.Inception3(), input_size=(1, 3, 299, 299), depth=3, mode="eval")


def _torchvision():
    import torch

    try:  # torchvision's compiled ops do not load beside the CPU torch wheel (tests/conftest.py)
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision.lib = lib
    except RuntimeError:
        pass
    import torchvision

    return torchvision


def child_forward(name: str, rounds: int, threads: int) -> dict:
    """torchvision vs generated vs deploy forward, same weights, eval, batch 8, interleaved."""
    import copy
    import importlib.util

    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torchvision = _torchvision()

    def load(path: Path):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    cls_name, size = {"googlenet": ("GoogLeNet", 224), "inception_v3": ("Inception3", 299)}[name]
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None, aux_logits=True, init_weights=False).eval()
    with torch.no_grad():  # BatchNorm state as after training, so that folding changes real numbers
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    gen = getattr(load(ROOT / "generated" / f"{name}.py"), cls_name)()
    gen.load_state_dict(ref.state_dict(), strict=True)
    gen.eval()
    from archspec.deploy import generate_deploy
    from archspec.pipeline import compile_spec

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}_deploy.py"
        path.write_text(generate_deploy(compile_spec(str(ROOT / "specs" / f"{name}.yaml"))))
        deploy_cls = getattr(load(path), cls_name + "Deploy")
    deploy = deploy_cls.from_trained(gen)
    deploy_nchw = deploy_cls.from_trained(gen, channels_last=False)
    ref_cl = copy.deepcopy(ref).to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, size, size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    runs = {"torchvision": (ref, x), "generated": (gen, x), "deploy": (deploy, x),
            "deploy_nchw": (deploy_nchw, x), "torchvision_cl": (ref_cl, x_cl)}
    times: dict = {k: [] for k in runs}
    with torch.inference_mode():
        want = ref(x)
        scale = max(1.0, want.abs().max().item())
        diffs = {k: (m(v) - want).abs().max().item() / scale for k, (m, v) in runs.items()}
        for m, v in runs.values():
            m(v)
        order = list(runs)
        for r in range(rounds):
            for k in order[r % len(order):] + order[:r % len(order)]:  # rotate: no model always runs first
                m, v = runs[k]
                t = time.perf_counter()
                m(v)
                times[k].append(time.perf_counter() - t)
    return {"median": {k: statistics.median(v) for k, v in times.items()}, "diff": diffs}


# --- the parent ------------------------------------------------------------------------------------

def _env() -> dict:
    """Children run with bytecode caching (as an installed package does), in a private cache."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "archspec-bench-pycache")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _wall(cmd: list, env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, cmd))} failed:\n{proc.stderr[-3000:]}")
    return elapsed


def _child(env: dict, *args) -> dict:
    proc = subprocess.run([PY, __file__, "--child", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: child {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def synthetic_spec(blocks: int) -> str:
    """A network of ``blocks`` Inception v3 35x35 modules (InceptionA, 31 layers each) on a 192x35x35 input."""
    conv = ("conv: conv2d(out, k, padding=p, bias=false)", "bn: batchnorm2d(eps=0.001)", "relu")
    lines = ["archspec: 1", f"name: synthetic_{blocks}",
             f"description: {blocks} Inception v3 35x35 blocks (InceptionA), written by bench/run.py.",
             "input: [192, 35, 35]", "blocks:",
             "  BasicConv2d:", "    args: {out: int, k: size, p: size = 0}", "    layers:",
             *(f"      - {item}" for item in conv),
             "  InceptionA:", "    args: {pool_features: int}", "    layers:", "      - concat:",
             "          - branch1x1: BasicConv2d(64, k=1)",
             "          - - branch5x5_1: BasicConv2d(48, k=1)",
             "            - branch5x5_2: BasicConv2d(64, k=5, p=2)",
             "          - - branch3x3dbl_1: BasicConv2d(64, k=1)",
             "            - branch3x3dbl_2: BasicConv2d(96, k=3, p=1)",
             "            - branch3x3dbl_3: BasicConv2d(96, k=3, p=1)",
             "          - - avgpool2d(3, stride=1, padding=1)",
             "            - branch_pool: BasicConv2d(pool_features, k=1)",
             "layers:", *(f"  - Mixed_{i}: InceptionA(pool_features=32)" for i in range(blocks)),
             "  - avgpool: adaptive_avgpool2d(1)", "  - flatten", "  - fc: linear(num_classes)"]
    return "\n".join(lines) + "\n"


class Report:
    def __init__(self):
        self.rows: list = []

    def add(self, goal: str, measured: str, target: str, ok: bool | None) -> None:
        self.rows.append((goal, measured, target, {True: "met", False: "MISSED", None: ""}[ok]))
        print(f"  {goal:<58} {measured:>22}   goal {target:<16} {self.rows[-1][3]}", flush=True)


def run_check(rep: Report, env: dict, rounds: int) -> None:
    check = [PY, "-m", "archspec", "check", "specs/inception_v3.yaml"]
    baseline = [PY, __file__, "--child", "torchinfo"]
    _wall(check, env), _wall(baseline, env)  # warm the bytecode cache and the page cache
    a, b = [], []
    for _ in range(rounds):
        a.append(_wall(check, env))
        b.append(_wall(baseline, env))
    ta, tb = statistics.median(a), statistics.median(b)
    rep.add("archspec check inception_v3, whole process", f"{ta * 1000:.0f} ms", "", None)
    rep.add("torch + generated model + torchinfo.summary, whole process", f"{tb * 1000:.0f} ms", "", None)
    rep.add("  check is faster by", f"{tb / ta:.1f}x", ">= 10x", tb / ta >= 10)


def run_analysis(rep: Report, env: dict, rounds: int) -> None:
    r = _child(env, "analysis", rounds)
    rep.add("in-process analysis of inception_v3 (load to totals), warm", f"{r['median'] * 1000:.1f} ms", "<= 12 ms",
            r["median"] <= 0.012)
    rep.add("  the same, first call in a process", f"{r['first'] * 1000:.1f} ms", "", None)


def run_scaling(rep: Report, env: dict, rounds: int, tmp: Path) -> None:
    paths = {}
    for n in SCALING_BLOCKS:
        paths[n] = tmp / f"synthetic_{n}.yaml"
        paths[n].write_text(synthetic_spec(n))
    runs: dict = {n: [] for n in SCALING_BLOCKS}
    whole: dict = {n: [] for n in SCALING_BLOCKS}
    ref: dict = {n: [] for n in (100, 1000)}
    for _ in range(rounds):  # sizes interleaved, so that a change of machine load hits them all
        for n in SCALING_BLOCKS:
            runs[n].append(_child(env, "compile", paths[n]))
            whole[n].append(_wall([PY, __file__, "--child", "check", paths[n]], env))
        for n in ref:
            ref[n].append(_child(env, "dicts", n)["seconds"])
    t = {n: statistics.median(r["seconds"] for r in runs[n]) for n in SCALING_BLOCKS}
    mem = {n: _child(env, "compile", paths[n], "--memory")["peak"] for n in SCALING_BLOCKS}
    for n in SCALING_BLOCKS:
        rep.add(f"check {n:>4} Inception blocks ({runs[n][0]['nodes']:,} nodes), in process",
                f"{t[n] * 1000:.1f} ms, {mem[n] / 1e6:.1f} MB", "", None)
    rep.add("  time t(1000) / t(100)", f"{t[1000] / t[100]:.2f}", "<= 12", t[1000] / t[100] <= 12)
    r = statistics.median(ref[1000]) / statistics.median(ref[100])
    rep.add("  reference: plain dicts for the same nodes, t(1000) / t(100)", f"{r:.2f}", "", None)
    rep.add("  time for 1,000 blocks", f"{t[1000]:.3f} s", "<= 1 s", t[1000] <= 1.0)
    w = {n: statistics.median(v) for n, v in whole.items()}
    rep.add("  whole process, check --depth 1: 10 / 100 / 1,000 blocks",
            " / ".join(f"{w[n] * 1000:.0f}" for n in SCALING_BLOCKS) + " ms", "", None)
    rep.add("  whole process t(1000) / t(100)", f"{w[1000] / w[100]:.2f}", "", None)
    rep.add("  peak memory m(1000) / m(100)", f"{mem[1000] / mem[100]:.2f}", "<= 12 (linear)", mem[1000] / mem[100] <= 12)


# hostile spec -> (what it is, the goal in seconds)
REFUSE = {"alias_bomb.yaml": ("alias bomb (10^10 values)", 0.5), "deep_flow.yaml": ("50,000 nested brackets", 1.0),
          "repeat_huge.yaml": ("repeat count 10^6", 1.0), "network_too_large.yaml": ("10^6 layers of nested repeats", 1.0),
          "block_fanout.yaml": ("2^20 block instances", 3.0)}


def run_refuse(rep: Report, env: dict, rounds: int, tmp: Path) -> None:
    hostile = ROOT / "tests" / "hostile"
    paths = {name: str(hostile / name) for name in REFUSE}
    lines = ["archspec: 1", "a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    paths["alias_bomb.yaml"] = str(tmp / "alias_bomb.yaml")
    Path(paths["alias_bomb.yaml"]).write_text("\n".join(lines) + "\n")
    paths["deep_flow.yaml"] = str(tmp / "deep_flow.yaml")
    Path(paths["deep_flow.yaml"]).write_text("layers: " + "[" * 50_000 + "]" * 50_000 + "\n")
    runs = [_child(env, "refuse", *paths.values()) for _ in range(rounds)]
    for name, (what, goal) in REFUSE.items():
        t = statistics.median(r[paths[name]] for r in runs)
        rep.add(f"refuse {what}", f"{t * 1000:.0f} ms", f"<= {goal:g} s", t <= goal)


def run_build(rep: Report, env: dict, rounds: int, tmp: Path) -> None:
    cmd = [PY, "-m", "archspec", "build", "-o", str(tmp / "build"), "specs/inception_v3.yaml"]
    _wall(cmd, env)
    t = statistics.median(_wall(cmd, env) for _ in range(rounds))
    proc = subprocess.run([PY, "-X", "importtime", *cmd[1:]], cwd=ROOT, env=env, capture_output=True, text=True)
    torch = bool(re.search(r"\|\s*torch(\.|\s*$)", proc.stderr, re.M))
    rep.add("archspec build inception_v3, whole process", f"{t * 1000:.0f} ms", "<= 500 ms", t <= 0.5)
    rep.add("  imports torch", "yes" if torch else "no", "no", not torch)


def run_forward(rep: Report, env: dict, rounds: int, threads: int) -> None:
    for name in ("googlenet", "inception_v3"):
        r = _child(env, "forward", name, rounds, threads)
        m, d = r["median"], r["diff"]
        base = m["torchvision"]
        rep.add(f"{name}: torchvision eval forward, batch 8", f"{base * 1000:.0f} ms", "", None)
        g = m["generated"] / base
        rep.add(f"  generated / torchvision (outputs differ by {d['generated']:.0e})", f"{g:.3f}", "1.00 +- 0.03", abs(g - 1) <= 0.03)
        dp = m["deploy"] / base
        rep.add(f"  deploy / torchvision (outputs differ by {d['deploy']:.0e})", f"{dp:.3f}", "<= 0.8", dp <= 0.8)
        rep.add("  deploy without channels_last / torchvision", f"{m['deploy_nchw'] / base:.3f}", "", None)
        rep.add("  torchvision in channels_last / torchvision", f"{m['torchvision_cl'] / base:.3f}", "", None)


def machine() -> str:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = re.search(r"Model name:\s*(.+)", out).group(1).strip()
    except (OSError, AttributeError):
        pass
    import importlib.metadata as md

    versions = []
    for dist in ("torch", "torchvision", "networkx", "pydantic"):
        try:
            versions.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {', '.join(versions)}; "
            f"load average {load:.2f} at start")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds: checks that the bench runs, not the goals")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({', '.join(SECTIONS)})")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for forward passes")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        what, rest = args.child[0], args.child[1:]
        if what == "torchinfo":
            child_torchinfo()
            return 0
        if what == "check":
            child_check(rest[0])
        result = {"analysis": lambda: child_analysis(int(rest[0])),
                  "compile": lambda: child_compile(rest[0], "--memory" in rest),
                  "dicts": lambda: child_dicts(int(rest[0])),
                  "refuse": lambda: child_refuse(rest),
                  "forward": lambda: child_forward(rest[0], int(rest[1]), int(rest[2]))}[what]()
        print(json.dumps(result))
        return 0
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    quick = args.quick
    env = _env()
    rep = Report()
    print(f"archspec bench: {machine()}")
    print(f"  rounds: {'quick' if quick else 'full'}; torch threads {args.threads}; medians of interleaved runs\n", flush=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="archspec-bench-"))
    try:
        if "check" in only:
            run_check(rep, env, 2 if quick else 7)
        if "analysis" in only:
            run_analysis(rep, env, 10 if quick else 50)
        if "scaling" in only:
            run_scaling(rep, env, 1 if quick else 9, tmp)
        if "refuse" in only:
            run_refuse(rep, env, 1 if quick else 5, tmp)
        if "build" in only:
            run_build(rep, env, 2 if quick else 7, tmp)
        if "forward" in only:
            run_forward(rep, env, 2 if quick else 15, args.threads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    missed = [r for r in rep.rows if r[3] == "MISSED"]
    print(f"\n{sum(r[3] == 'met' for r in rep.rows)} goals met, {len(missed)} missed "
          f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rep.rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
