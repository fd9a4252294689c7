"""Stage 7, report: the ``check`` table (torchinfo-like) and the stable JSON object."""
from __future__ import annotations

from .errors import printable
from .text import batched, batched_text, human, number

CONVENTION = ("MACs = multiply-adds of conv and linear layers at batch 1 in eval mode, bias not counted "
              "(torchvision's _ops / fvcore conv+linear convention); FLOPs = 2 x MACs.")


def to_json(c, shown: str | None = None, mem=None, est=None) -> dict:
    """One stable object per spec (keys documented in docs/cli.md); ``shown``: the spec as the
    command line gave it (default: the file compiled); ``mem`` (archspec/memory.py) and ``est``
    (archspec/roofline.py) add memory and time fields."""
    a = c.analysis
    t = a.totals
    g = a.graph
    layers = []
    for node in g:
        if node.op == "input":
            continue
        meta = node.meta
        layers.append({"path": node.name, "op": node.op, "output_shape": batched(meta["shape"]), "params": meta["params"],
                       "buffers": meta["buffers"], "macs": meta["macs"], "part": node.part,
                       "receptive_field": list(meta["rf"][:2]), **_cost_fields(mem, est, node.name, True)})
    modules = [{"path": p, "type": m["type"], "part": m["part"], "output_shape": batched(m["output_shape"]),
                "params": m["params"], "macs": m["macs"], **_cost_fields(mem, est, p, False)}
               for p, m in a.modules.items() if p]
    out = {
        "name": c.name,
        "spec": c.file if shown is None else shown,
        "input": batched(g.input_shape),
        "output": batched(a.output),
        "num_classes": c.expanded.num_classes,
        "expect_checked": c.expect_checked,
        "totals": {
            "params": t.params,
            "params_eval": t.params_eval,
            "params_by_part": t.params_by_part,
            "buffers": t.buffers,
            "buffers_eval": t.buffers_eval,
            "macs": t.macs,
            "macs_by_part": t.macs_by_part,
            "flops": t.flops,
            "depth": t.depth,
        },
        "aux": {name: {"from": h.source, "loss_weight": h.loss_weight, "params": t.params_by_part[name],
                       "output": batched(g.aux[name].meta["shape"])} for name, h in
                ((h.name, h) for h in c.expanded.aux)},
        "rewrites": [r.to_json() for r in c.rewrites],
        "conventions": CONVENTION,
        "modules": modules,
        "layers": layers,
    }
    if mem is not None:
        out["memory"] = mem.to_json()
    if est is not None:
        out["time"] = est.to_json()
    return out


def _cost_fields(mem, est, key: str, layer: bool) -> dict:
    """Memory and time fields of one layer (graph node) or module."""
    out = {}
    if mem is not None:
        entry = (mem.layers if layer else mem.modules).get(key, {})
        out["output_bytes"] = entry.get("output_bytes")
        if mem.optimizer is not None:
            out["saved_bytes"] = entry.get("saved_bytes")
    if est is not None:
        entry = (est.layers if layer else est.modules).get(key)
        if layer:
            keys = ("flops", "bytes_moved", "intensity", "time_s", "bound")
            out.update(dict.fromkeys(keys) if entry is None else
                       {"flops": entry["flops"], "bytes_moved": entry["bytes"], "intensity": entry["intensity"],
                        "time_s": entry["time_s"], "bound": entry["bound"]})
        else:
            out["time_s"] = entry["time_s"] if entry else None
    return out


def table(c, depth: int = 3, shown: str | None = None, mem=None, est=None) -> str:
    """A torchinfo-like table of modules down to ``depth`` levels (0: every level), then the totals;
    ``mem`` and ``est`` add memory and time columns and totals."""
    a = c.analysis
    rows = [("Layer (type)", "Output Shape", "Param #", "MACs", *_cost_headers(mem, est))]
    for path, m in a.modules.items():
        if not path:
            continue
        level = path.count(".") + 1
        if depth and level > depth:  # 0: no limit, as draw --depth 0
            continue
        indent = "  " * (level - 1)
        name = path.rsplit(".", 1)[-1]
        label = f"{indent}{name} ({m['type']})"
        if m["part"] != "main" and level == 1:
            label += " [aux, training only]"
        rows.append((label, batched_text(m["output_shape"]), number(m["params"]) if m["params"] else "--",
                     number(m["macs"]) if m["macs"] else "--", *_cost_cells(mem, est, path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    total_width = sum(widths) + 2 * (len(widths) - 1)
    line = "=" * total_width

    def fmt(r):
        cells = [f"{r[0]:<{widths[0]}}", f"{r[1]:<{widths[1]}}"] + [f"{v:>{w}}" for v, w in zip(r[2:], widths[2:])]
        return "  ".join(cells)

    t = a.totals
    # the file name is the user's: ESC, newlines and undecodable bytes are escaped, not printed
    out = [line, f"{c.name}  ({printable(c.file if shown is None else shown)})", line, fmt(rows[0]), "-" * total_width]
    out += [fmt(r) for r in rows[1:]]
    parts = " + ".join(f"{k} {number(v)}" for k, v in t.params_by_part.items())
    g = a.graph
    out += [
        line,
        f"Input: {batched(g.input_shape)}   Output: {batched(a.output)}",
        f"Params (training, all parts): {number(t.params)}" + (f"  = {parts}" if len(t.params_by_part) > 1 else ""),
        f"Params (eval, main network):  {number(t.params_eval)}",
        f"Buffers:                      {number(t.buffers)}",
        f"MACs (eval, batch 1):         {number(t.macs)}  ({human(t.macs)})",
        f"FLOPs (2 x MACs):             {number(t.flops)}  ({human(t.flops)})",
        f"Depth (weight layers on the longest path): {t.depth}",
    ]
    for r in c.rewrites:
        out.append(f"Rewrite: {r.describe()}")
    if c.expect_checked is False:
        out.append(f"Note: expect: not checked: its totals are for the spec as written, not with {c.override_flags}.")
    out += _memory_lines(mem) + _time_lines(est)
    out += [f"Note: {CONVENTION}", line]
    return "\n".join(out)


def _bytes(v: int) -> str:
    """Bytes as people read them, in powers of 1000 (torchinfo's MB)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v} B"


def _seconds(v: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3)):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v / 1e-6:.1f} us"


def _cost_headers(mem, est) -> tuple:
    heads = ()
    if mem is not None:
        heads += ("Output", "Saved") if mem.optimizer is not None else ("Output",)
    if est is not None:
        heads += ("FLOP/B", "Est. time")
    return heads


def _cost_cells(mem, est, path: str) -> tuple:
    cells = ()
    if mem is not None:
        m = mem.modules.get(path, {})
        cells += (_bytes(m.get("output_bytes", 0)),)
        if mem.optimizer is not None:
            cells += (_bytes(m["saved_bytes"]) if m.get("saved_bytes") else "--",)
    if est is not None:
        e = est.modules.get(path)
        if e is None or not e["time_s"]:
            cells += ("--", "--")
        else:
            bound = " M" if e["memory_s"] * 2 > e["time_s"] else ""  # more than half of it memory-bound
            cells += (f"{e['flops'] / e['bytes']:.1f}" if e["bytes"] else "--", _seconds(e["time_s"]) + bound)
    return cells


def _memory_lines(mem) -> list:
    if mem is None:
        return []
    out = [
        f"Memory at batch {mem.batch}, {mem.dtype} (tensor storage; 1 MB = 10^6 bytes):",
        f"  Columns: Output = each module's output at batch {mem.batch}"
        + ("; Saved = what its layers keep for backward (a tensor two rows keep is in both, once below)"
           if mem.optimizer is not None else ""),
        f"  Parameters (eval):          {_bytes(mem.params_eval_bytes)}"
        + (f"  (training, all parts: {_bytes(mem.params_bytes)})" if mem.params_bytes != mem.params_eval_bytes else ""),
        f"  Buffers (eval):             {_bytes(mem.buffers_eval_bytes)}",
        f"  Input:                      {_bytes(mem.input_bytes)}",
        f"  Inference peak:             {_bytes(mem.inference_peak)}  at {mem.inference_peak_at}"
        " (eval forward under no_grad; parameters, buffers and input included)",
    ]
    if mem.optimizer is not None:
        phase, layer = mem.training_peak_at
        out += [
            f"  Training step ({mem.optimizer}):",
            f"    Gradients:                {_bytes(mem.grads_bytes)}",
            f"    Optimizer state:          {_bytes(mem.optimizer_bytes)}",
            f"    Saved for backward:       {_bytes(mem.saved_bytes)}  (distinct tensors autograd keeps, the loss's included)",
            f"    Peak:                     {_bytes(mem.training_peak)}  in {phase} at {layer}",
        ]
    return out


def _time_lines(est) -> list:
    if est is None:
        return []
    mb = est.memory_bound
    d = est.device
    return [
        f"Time estimate, roofline on {d.name} ({human(int(d.peak_flops[est.dtype]))}FLOP/s {est.dtype}, "
        f"{_bytes(int(d.bandwidth))}/s), eval forward at batch {est.batch}; an estimate, not a measurement:",
        f"  Forward:                    {_seconds(est.total_s)}"
        f"  ({len(mb)} of {len(est.layers)} layers memory-bound, {_seconds(sum(est.layers[n]['time_s'] for n in mb))} of it)",
    ]
