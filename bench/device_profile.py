"""Measure a device profile of this CPU for `archspec check --device` (needs torch).

    python bench/device_profile.py                  # prints the profile
    python bench/device_profile.py -o devices/cpu-epyc-2core.yaml --name cpu-epyc-2core

Peak FLOP/s per dtype: the best of repeated square matrix products (torch.mm, 2048 x 2048 for
float32, 1024 for the 16-bit types), 2 n^3 FLOPs each, with every core torch uses by default.
Memory bandwidth: the best of repeated copies of a 512 MiB tensor (a copy reads and writes each
byte, so 2 x 512 MiB moved). Best rather than median because a profile is a ceiling: on a machine
shared with other work every run is slowed by whatever else runs, so the measurement is repeated
``--runs`` times, a few seconds apart, and the best of all is kept.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time


def _best(fn, repeats: int) -> float:
    fn()  # warm up (allocations, oneDNN's kernel choice)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def peak_flops(torch, dtype, n: int, repeats: int) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    return 2 * n**3 / _best(lambda: torch.mm(a, b, out=out), repeats)


def bandwidth(torch, nbytes: int, repeats: int) -> float:
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    return 2 * nbytes / _best(lambda: dst.copy_(src), repeats)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    get = lambda k: fields.get(k, "?").strip()  # noqa: E731
    return (f"{get('Model name')} (family {get('CPU family')}, model {get('Model')}), {get('CPU(s)')} CPUs, "
            f"{get('Hypervisor vendor') + ' guest, ' if 'Hypervisor vendor' in fields else ''}L3 {get('L3 cache')}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", help="write the profile to this YAML file")
    p.add_argument("--name", default="cpu", help="the profile's name")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per measurement")
    p.add_argument("--runs", type=int, default=5, help="measurements, a few seconds apart; the best is kept")
    args = p.parse_args()
    import torch

    sizes = {"float32": (torch.float32, 2048), "bfloat16": (torch.bfloat16, 1024), "float16": (torch.float16, 1024)}
    peaks = dict.fromkeys(sizes, 0.0)
    bw = 0.0
    for run in range(args.runs):
        if run:
            time.sleep(5)
        for name, (dtype, n) in sizes.items():
            peaks[name] = max(peaks[name], peak_flops(torch, dtype, n, args.repeats))
        bw = max(bw, bandwidth(torch, 512 * 2**20, args.repeats))
    model = cpu_model()
    text = (
        f"# Measured by bench/device_profile.py (torch {torch.__version__}, {torch.get_num_threads()} threads).\n"
        f"name: {args.name}\n"
        f"description: \"{model}\"\n"
        f"source: \"measured: best of {args.runs} x {args.repeats} torch.mm (2 n^3 FLOPs; n = 2048 float32, 1024 "
        f"16-bit) and of {args.runs} x {args.repeats} copies of 512 MiB (2 bytes moved per byte)\"\n"
        "peak_flops:  # FLOP/s\n"
        + "".join(f"  {k}: {v:.4g}\n" for k, v in peaks.items())
        + f"memory_bandwidth: {bw:.4g}  # bytes/s\n"
    )
    print(text, end="")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
