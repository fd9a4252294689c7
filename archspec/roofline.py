"""After analyse: a roofline estimate of the inference forward's time on a device profile.

An estimate, not a measurement. Each layer (graph node) is charged the larger of its compute time,
``FLOPs / peak FLOP/s`` for the dtype, and its memory time, ``bytes moved / bandwidth``, where the
bytes moved are its inputs read once, what it writes (its output, or everything its memory rule
allocates: max pooling's indices, a composite's temporaries) and its parameters and buffers; views,
the identity and dropout in eval move nothing. The estimate assumes every layer reaches the device's
peak, that nothing stays in cache between layers and that layers do not overlap, and it ignores
per-call overheads; docs/cli.md ("Time estimate") says what that means and docs/performance.md
measures how close it comes on the CPU it was profiled on.

Device profiles are YAML files (``devices/*.yaml`` ship with archspec): ``peak_flops`` per dtype in
FLOP/s, ``memory_bandwidth`` in bytes/s, with ``description`` and ``source`` saying where the
numbers come from.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .errors import LoadError, Loc, UsageError
from .memory import DTYPES, INDEX_BYTES, contexts, enclosing, rule
from .ops import OPS


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    source: str
    peak_flops: dict  # dtype -> FLOP/s
    bandwidth: float  # bytes/s
    file: str


def device_dir() -> str:
    from .resources import data_dir

    return data_dir("devices", "a100-sxm4-80gb.yaml") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "devices")


def devices() -> list:
    """Names of the shipped device profiles."""
    d = device_dir()
    return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".yaml")) if os.path.isdir(d) else []


def load_device(name: str) -> Device:
    """A shipped profile by name, or a YAML file."""
    import yaml

    path = name
    if not os.path.isfile(path):
        path = os.path.join(device_dir(), os.path.basename(name).removesuffix(".yaml") + ".yaml")
        if os.sep in name or not os.path.isfile(path):
            raise UsageError(f"no device profile '{name}': give a YAML file or one of {', '.join(devices())}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LoadError(f"cannot read device profile: {exc}", Loc(path)) from None
    _check_profile(data, Loc(path))
    return Device(str(data.get("name") or os.path.basename(path)[:-5]), str(data.get("description") or ""),
                  str(data.get("source") or ""), {k: float(v) for k, v in data["peak_flops"].items()},
                  float(data["memory_bandwidth"]), path)


def _check_profile(data, where: Loc) -> None:
    if not isinstance(data, dict):
        raise LoadError("a device profile is a mapping with peak_flops and memory_bandwidth", where)
    unknown = set(data) - {"name", "description", "source", "peak_flops", "memory_bandwidth"}
    if unknown:
        raise LoadError(f"unknown key{'s' if len(unknown) > 1 else ''} in device profile: {', '.join(sorted(unknown))}", where)
    peaks = data.get("peak_flops")
    if not isinstance(peaks, dict) or not peaks or any(k not in DTYPES or not _positive(v) for k, v in peaks.items()):
        raise LoadError(f"peak_flops must map dtypes ({', '.join(DTYPES)}) to positive FLOP/s", where.at("peak_flops"))
    if not _positive(data.get("memory_bandwidth")):
        raise LoadError("memory_bandwidth must be a positive number of bytes/s", where.at("memory_bandwidth"))


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


@dataclass
class Estimate:
    """Roofline times of an inference forward (seconds)."""

    device: Device
    batch: int
    dtype: str
    layers: dict  # node -> {"flops", "bytes", "intensity", "time_s", "bound"}
    modules: dict  # path -> {"flops", "bytes", "time_s", "memory_s"}

    @property
    def total_s(self) -> float:
        return sum(v["time_s"] for v in self.layers.values())

    @property
    def memory_bound(self) -> list:
        return [n for n, v in self.layers.items() if v["bound"] == "memory"]

    def to_json(self) -> dict:
        mb = self.memory_bound
        return {"device": self.device.name, "batch": self.batch, "dtype": self.dtype,
                "peak_flops": self.device.peak_flops[self.dtype], "memory_bandwidth": self.device.bandwidth,
                "total_s": self.total_s, "flops": sum(v["flops"] for v in self.layers.values()),
                "bytes": sum(v["bytes"] for v in self.layers.values()),
                "memory_bound_layers": len(mb), "memory_bound_s": sum(self.layers[n]["time_s"] for n in mb),
                "estimate": True}


def _cost(node, ctx) -> tuple:
    """(FLOPs, bytes moved) of one layer, from the MemCtx of its call in an eval forward."""
    op = OPS[node.op]
    ins = [i.meta["shape"] for i in node.inputs]
    shape = node.meta["shape"]
    batch, isz = ctx.n, ctx.isz
    flops = batch * op.flops(ins, shape, node.attrs)
    fwd, _ = rule(node, ctx)
    # written: what the op allocates (max pooling's indices, a composite's temporaries, a copy that
    # a reshape needs included), or its output when it works in place; a view or the identity moves nothing
    written = sum(alloc[1] for step in fwd if step[0] == "k" for alloc in step[1:])
    if not written and flops:
        written = batch * math.prod(shape) * isz
    if not written:
        return flops, 0
    weights = sum(INDEX_BYTES if name == "num_batches_tracked" else math.prod(s) * isz
                  for name, s, _ in node.meta.get("tensors", ()))
    return flops, sum(batch * math.prod(s) * isz for s in ins) + written + weights


def estimate(c, device: Device, batch: int = 1, dtype: str = "float32") -> Estimate:
    """The roofline time of each layer of the main network, eval, at ``batch``."""
    if dtype not in device.peak_flops:
        raise UsageError(f"device profile {device.name} has no peak for {dtype} "
                         f"(it lists {', '.join(device.peak_flops)})")
    g = c.graph
    isz = DTYPES[dtype]
    peak, bw = device.peak_flops[dtype], device.bandwidth
    layers, own = {}, {}
    ctxs = contexts(c, batch, isz)
    for node in g:
        if node.op == "input" or node.part != "main":
            continue
        flops, nbytes = _cost(node, ctxs[node]) if node in ctxs else (0, 0)  # a functional identity runs nothing
        compute, memory = flops / peak, nbytes / bw
        time_s = max(compute, memory)
        layers[node.name] = {"flops": flops, "bytes": nbytes, "intensity": flops / nbytes if nbytes else None,
                             "time_s": time_s,
                             "bound": None if not nbytes and not flops else "memory" if memory > compute else "compute"}
        sums = own.setdefault(node.path, [0, 0, 0.0, 0.0])
        sums[0] += flops
        sums[1] += nbytes
        sums[2] += time_s
        sums[3] += time_s if memory > compute else 0.0
    modules = {}
    for path, (flops, nbytes, time_s, memory_s) in own.items():
        for key in enclosing(path):
            m = modules.setdefault(key, {"flops": 0, "bytes": 0, "time_s": 0.0, "memory_s": 0.0})
            m["flops"] += flops
            m["bytes"] += nbytes
            m["time_s"] += time_s
            m["memory_s"] += memory_s
    return Estimate(device, batch, dtype, layers, modules)
