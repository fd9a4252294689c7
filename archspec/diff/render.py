"""diff, the result: a Diff holds the two analysed specs and their changes, and shows them as text,
markdown or JSON."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import printable
from .changes import Group
from ..text import batched, number, signed


@dataclass
class Diff:
    """Two analysed specs and the changes between them."""

    a: object  # Compiled
    b: object
    changes: list
    code: str | None = None  # unified diff of the generated modules (--code)
    shown: tuple | None = None  # the two specs as the command line gave them (default: the files)
    memory: tuple | None = None  # (A, B) archspec.memory.Memory, when asked (--batch, --train ...)

    def _files(self) -> tuple:
        return self.shown or (self.a.file, self.b.file)

    @property
    def identical(self) -> bool:
        return not self.changes

    @property
    def groups(self) -> list:
        out: dict = {}
        for c in self.changes:
            out.setdefault((c.kind, c.key), Group(c.kind, c.key, [])).changes.append(c)
        return list(out.values())

    def totals(self) -> dict:
        """Each total in A and B, with the delta and the ratio B/A."""
        ta, tb = self.a.analysis.totals, self.b.analysis.totals
        rows = {}
        for name in ("params", "params_eval", "buffers", "macs", "flops", "depth"):
            x, y = getattr(ta, name), getattr(tb, name)
            rows[name] = {"a": x, "b": y, "delta": y - x, "ratio": round(y / x, 4) if x else None}
        parts = list(dict.fromkeys([*ta.params_by_part, *tb.params_by_part]))
        rows["params_by_part"] = {p: {"a": ta.params_by_part.get(p, 0), "b": tb.params_by_part.get(p, 0),
                                      "delta": tb.params_by_part.get(p, 0) - ta.params_by_part.get(p, 0)} for p in parts}
        rows["output"] = {"a": batched(self.a.analysis.output), "b": batched(self.b.analysis.output)}
        rows["input"] = {"a": batched(self.a.expanded.input), "b": batched(self.b.expanded.input)}
        if self.memory is not None:
            rows["memory"] = self._memory_totals()
        return rows

    def modules(self) -> list:
        """Top-level modules (aux heads included) whose params, MACs or output shape differ."""
        ma, mb = self.a.analysis.modules, self.b.analysis.modules
        top = lambda mods: [p for p in mods if p and "." not in p]  # noqa: E731
        out = []
        for path in dict.fromkeys([*top(ma), *top(mb)]):
            x, y = ma.get(path), mb.get(path)
            row = {"path": path}
            for side, m in (("a", x), ("b", y)):
                row[side] = None if m is None else {"type": m["type"], "output_shape": batched(m["output_shape"]),
                                                    "params": m["params"], "macs": m["macs"], "part": m["part"]}
            if x and y and row["a"] == {**row["b"], "type": row["a"]["type"]} and not self._touched(path):
                continue
            row["params_delta"] = (y["params"] if y else 0) - (x["params"] if x else 0)
            if self.memory is not None and self.memory[0].optimizer is not None:
                row.update(self._saved(path, x is not None, y is not None))
            row["macs_delta"] = (y["macs"] if y else 0) - (x["macs"] if x else 0)
            out.append(row)
        return out

    def _touched(self, path: str) -> bool:
        for c in self.changes:
            for s in c.a + c.b:
                if s["path"] == path or s["path"].startswith(path + ".") or s["path"].startswith(path + "/"):
                    return True
        return False

    def notes(self) -> list:
        out = []
        if self.a.name != self.b.name:
            out.append(f"name {self.a.name} -> {self.b.name}")
        return out

    def to_json(self) -> dict:
        out = {
            "a": {"name": self.a.name, "spec": self._files()[0]},
            "b": {"name": self.b.name, "spec": self._files()[1]},
            "identical": self.identical,
            "totals": self.totals(),
            "groups": [g.to_json() for g in self.groups],
            "modules": self.modules(),
            "notes": self.notes(),
            "conventions": "MACs: conv+linear multiply-adds at batch 1 in eval mode (main network); "
                           "changes inside aux heads change training-time MACs only.",
        }
        if self.code is not None:
            out["code"] = self.code
        return out

    # --- text ---
    def text(self) -> str:
        a, b = self.a, self.b
        fa, fb = map(printable, self._files())
        lines = [f"A: {a.name}  ({fa})", f"B: {b.name}  ({fb})", ""]
        groups = self.groups
        if not groups:
            lines.append("The two networks are identical" + (f" ({self.notes()[0]})." if self.notes() else "."))
        else:
            places = len({c.location for c in self.changes})
            lines.append(f"{len(self.changes)} change{'s' if len(self.changes) != 1 else ''} in {len(groups)} "
                         f"group{'s' if len(groups) != 1 else ''}, at {places} place{'s' if places != 1 else ''}:")
            for g in groups:
                lines.append("")
                lines.extend(self._group_lines(g))
        lines += ["", *self._totals_lines()]
        mods = self.modules()
        if mods and groups:
            lines += ["", *self._module_lines(mods)]
        lines += ["", *self._ratio_lines()]
        if self.code is not None:
            lines += ["", "Generated code (unified diff):", self.code.rstrip("\n") if self.code else "(identical)"]
        return "\n".join(lines) + "\n"

    def _group_lines(self, g: Group) -> list:
        mark = {"changed": "~", "replaced": ">", "removed": "-", "added": "+", "renamed": "="}[g.kind]
        n = len(g.locations)
        where = ", ".join(g.compact_locations())
        lines = [f"{mark} {g.kind} {g.summary}",
                 f"    at {n} places: {where}" if n > 1 else f"    at {where}",
                 "    " + "   ".join(_cost_words(g))]
        if g.kind == "replaced" and n > 1:  # a rewrite: each place with its own saving
            for c in g.changes:
                pa, pb = sum(s["params"] for s in c.a), sum(s["params"] for s in c.b)
                pct = f" ({(pb - pa) / pa:+.1%})" if pa else ""
                lines.append(f"      {c.location}: {c.summary}   params {number(pa)} -> {number(pb)}{pct}   MACs {signed(c.macs_delta)}")
        return lines

    def _saved(self, path: str, in_a: bool, in_b: bool) -> dict:
        """What a top-level module keeps for backward in A and B (training memory, when asked)."""
        kept = [m.modules.get(path, {}).get("saved_bytes") or 0 for m in self.memory]
        return {"saved_bytes": {"a": kept[0] if in_a else None, "b": kept[1] if in_b else None},
                "saved_delta": kept[1] - kept[0]}

    def _memory_totals(self) -> dict:
        """The memory of both, when asked: the inference peak and, with training, what autograd keeps
        and the step's peak (bytes; archspec/memory.py)."""
        ma, mb = self.memory
        out = {"batch": ma.batch, "dtype": ma.dtype, "optimizer": ma.optimizer}
        for name, attr in _MEMORY_ROWS:
            if ma.optimizer is not None or attr == "inference_peak":
                x, y = getattr(ma, attr), getattr(mb, attr)
                out[name] = {"a": x, "b": y, "delta": y - x, "ratio": round(y / x, 4) if x else None}
        return out

    def _memory_rows(self) -> list:
        """(label, row) of the memory totals, as the text and markdown show them."""
        mem = self.totals().get("memory")
        if mem is None:
            return []
        where = f"batch {mem['batch']}, {mem['dtype']}"
        return [(label.format(where=where, optimizer=mem["optimizer"]), mem[name])
                for name, label in _MEMORY_LABELS.items() if name in mem]

    def _totals_lines(self) -> list:
        t = self.totals()
        an, bn = self.a.name, self.b.name
        rows = [("", an, bn, "change", "B/A")]

        def add(label, row, fmt=number):
            ratio = _ratio_number(row["b"], row["a"]) if row.get("ratio") is not None else ""
            rows.append((label, fmt(row["a"]), fmt(row["b"]), signed(row["delta"]), ratio))

        add("params (training)", t["params"])
        if len(t["params_by_part"]) > 1:
            for part, row in t["params_by_part"].items():
                rows.append((f"  {part}", number(row["a"]), number(row["b"]), signed(row["delta"]), ""))
        add("params (eval)", t["params_eval"])
        add("buffers", t["buffers"])
        add("MACs (eval)", t["macs"])
        add("depth", t["depth"], str)
        for label, row in self._memory_rows():
            add(label, row)
        rows.append(("input", str(t["input"]["a"]), str(t["input"]["b"]), "", ""))
        rows.append(("output", str(t["output"]["a"]), str(t["output"]["b"]), "", ""))
        w = [max(len(r[i]) for r in rows) for i in range(5)]
        out = ["Totals:"]
        for r in rows:
            out.append(f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  {r[4]:>{w[4]}}".rstrip())
        return out

    def _module_lines(self, mods: list) -> list:
        saved = "saved_delta" in mods[0]
        rows = [("module", "output A", "output B", "params A", "params B", "change") + (("saved change",) if saved else ())]
        for m in mods:
            x, y = m["a"], m["b"]
            rows.append((m["path"] + ("" if (y or x)["part"] == "main" else " [aux]"),
                         str(x["output_shape"]) if x else "--", str(y["output_shape"]) if y else "--",
                         number(x["params"]) if x else "--", number(y["params"]) if y else "--", signed(m["params_delta"]))
                        + ((signed(m["saved_delta"]),) if saved else ()))
        w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out = ["Top-level modules that differ:"]
        for r in rows:
            cells = [f"{r[0]:<{w[0]}}", f"{r[1]:<{w[1]}}", f"{r[2]:<{w[2]}}"] + [f"{v:>{k}}" for v, k in zip(r[3:], w[3:])]
            out.append(("  " + "  ".join(cells)).rstrip())
        return out

    def _ratio_lines(self) -> list:
        ta, tb = self.a.analysis.totals, self.b.analysis.totals
        an, bn = self.a.name, self.b.name
        rows = [("Parameters (eval, main network)", ta.params_eval, tb.params_eval, "parameters")]
        if ta.params != ta.params_eval or tb.params != tb.params_eval:
            rows.append(("Parameters (training, aux heads included)", ta.params, tb.params, "parameters"))
        rows.append(("MACs (eval)", ta.macs, tb.macs, "MACs"))
        return [f"{label}: {an} {number(x)}, {bn} {number(y)}; {bn}/{an} = {_ratio(y, x)}" for label, x, y, _ in rows]

    # --- markdown ---
    def markdown(self) -> str:
        a, b = self.a, self.b
        fa, fb = map(printable, self._files())
        out = [f"## `{a.name}` -> `{b.name}`", "", f"A: `{fa}`, B: `{fb}`", ""]
        if not self.groups:
            out += ["The two networks are identical.", ""]
        else:
            out += ["| | change | where | params | MACs |", "|---|---|---|---:|---:|"]
            for g in self.groups:
                where = ", ".join(f"`{p}`" for p in g.compact_locations())
                n = len(g.locations)
                out.append(f"| {g.kind} | {_md(g.summary)} | {n} x {where} | {signed(g.params_delta)} | {signed(g.macs_delta)} |"
                           if n > 1 else f"| {g.kind} | {_md(g.summary)} | {where} | {signed(g.params_delta)} | {signed(g.macs_delta)} |")
            out.append("")
        t = self.totals()
        out += [f"| total | `{a.name}` | `{b.name}` | change | B/A |", "|---|---:|---:|---:|---:|"]
        rows = [(label, t[key]) for label, key in (("params (training)", "params"), ("params (eval)", "params_eval"),
                                                   ("buffers", "buffers"), ("MACs (eval)", "macs"), ("depth", "depth"))]
        for label, row in rows + self._memory_rows():
            ratio = _ratio_number(row["b"], row["a"]) if row["ratio"] is not None else ""
            out.append(f"| {label} | {number(row['a'])} | {number(row['b'])} | {signed(row['delta'])} | {ratio} |")
        out.append(f"| output | {t['output']['a']} | {t['output']['b']} | | |")
        out += ["", *(f"- {line}" for line in self._ratio_lines())]
        if self.code is not None:
            out += ["", "```diff", self.code.rstrip("\n"), "```"]
        return "\n".join(out) + "\n"


def _cost_words(g: Group) -> list:
    """What a group changes: params and MACs (with the aux heads' share), the output shape."""
    aux = [p for p in g.parts if p != "main"]
    in_aux = [c for c in g.changes if c.part != "main"]

    def delta(label, total, aux_share):
        text = f"{label} {signed(total)}"
        if aux and len(aux) < len(g.parts) and aux_share:
            text += f" (aux heads {signed(aux_share)})"
        return text

    cost = [delta("params", g.params_delta, sum(c.params_delta for c in in_aux)),
            delta("MACs", g.macs_delta, sum(c.macs_delta for c in in_aux))]
    if g.kind == "replaced":
        before = sum(s["params"] for c in g.changes for s in c.a)
        if before:
            cost[0] += f" ({g.params_delta / before:+.1%})"
    shape = g.output_change()
    if shape:
        cost.append(shape)
    if aux and len(aux) == len(g.parts):
        cost.append(f"(aux head{'s' if len(aux) > 1 else ''} {', '.join(aux)}: training only)")
    return cost


# Memory totals a diff shows when asked (bytes; archspec/memory.py, docs/cli.md#memory)
_MEMORY_ROWS = (("inference_peak_bytes", "inference_peak"), ("saved_bytes", "saved_bytes"),
                ("training_peak_bytes", "training_peak"))
_MEMORY_LABELS = {"inference_peak_bytes": "peak bytes (eval, {where})",
                  "saved_bytes": "saved for backward ({where})",
                  "training_peak_bytes": "peak bytes (training step, {optimizer})"}


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _ratio_number(y: int, x: int) -> str:
    """B/A as every text shows it: three decimals of the exact quotient (the JSON keeps four)."""
    return f"{y / x:.3f}"


def _ratio(y: int, x: int) -> str:
    """'0.108 (9.22x fewer)', '0.947 (5.3% fewer)', '1.000 (equal)'."""
    if not x:
        return "--"
    r = y / x
    if y == x:
        return "1.000 (equal)"
    if not y:
        return "0.000"
    if 2 / 3 < r < 1.5:
        return f"{_ratio_number(y, x)} ({abs(1 - r):.1%} {'fewer' if r < 1 else 'more'})"
    return f"{_ratio_number(y, x)} ({x / y:.2f}x fewer)" if r < 1 else f"{_ratio_number(y, x)} ({r:.2f}x more)"
