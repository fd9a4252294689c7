"""Stage 7, report: the ``check`` table (torchinfo-like) and the stable JSON object."""
from __future__ import annotations

from .errors import printable
from .text import batched, batched_text, human, number

CONVENTION = ("MACs = multiply-adds of conv and linear layers at batch 1 in eval mode, bias not counted "
              "(torchvision's _ops / fvcore conv+linear convention); FLOPs = 2 x MACs.")


def to_json(c, shown: str | None = None) -> dict:
    """One stable object per spec (keys documented in docs/cli.md); ``shown``: the spec as the
    command line gave it (default: the file compiled)."""
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
                       "receptive_field": list(meta["rf"][:2])})
    modules = [{"path": p, "type": m["type"], "part": m["part"], "output_shape": batched(m["output_shape"]),
                "params": m["params"], "macs": m["macs"]} for p, m in a.modules.items() if p]
    return {
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


def table(c, depth: int = 3, shown: str | None = None) -> str:
    """A torchinfo-like table of modules down to ``depth`` levels (0: every level), then the totals."""
    a = c.analysis
    rows = [("Layer (type)", "Output Shape", "Param #", "MACs")]
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
                     number(m["macs"]) if m["macs"] else "--"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    total_width = sum(widths) + 6
    line = "=" * total_width

    def fmt(r):
        return f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}"

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
    out += [f"Note: {CONVENTION}", line]
    return "\n".join(out)
