"""draw: a compiled spec -> a figure of the network (Graphviz DOT, SVG through ``dot``, Mermaid).

The lowered graph is collapsed to a chosen depth: every module ``depth`` levels down (or a leaf
above that) becomes one box showing its name, its op or block type and its output shape; the
blocks above it become boxes around their contents (Graphviz clusters, Mermaid subgraphs). Merges
(concat, add) are drawn as their own small nodes, so parallel branches stand side by side between
the split and the merge. Aux heads are dashed and orange, and drawn with dashed edges. A legend
gives the totals. ``depth 0`` draws every primitive op.

Only text is produced here; the command line writes the file (SVG needs Graphviz's ``dot``).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

from .errors import GenerateError, UsageError
from .graph import Node, Span
from .ops import OPS
from .text import dims, human
from .words import short_op

FORMATS = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".mmd": "mermaid"}
HASH_MARK = "archspec-dot-sha256: "

# Colours: (fill, border). Weight layers blue, pooling green, merges yellow, the rest grey, aux orange.
_STYLE = {
    "weights": ("#dce8f6", "#3d6fa8"),
    "pool": ("#e2f0dc", "#4f8a3c"),
    "merge": ("#fff0c2", "#b58a00"),
    "other": ("#f1f1f1", "#7a7a7a"),
    "io": ("#ffffff", "#333333"),
    "aux": ("#fde6d3", "#d2691e"),
}
_CLUSTER = {"main": ("#f7f9fc", "#9aaec8"), "aux": ("#fff7f0", "#d2691e")}
_POOL_OPS = {"maxpool2d", "avgpool2d", "adaptive_avgpool2d", "adaptive_maxpool2d"}


@dataclass
class Box:
    id: str
    name: str  # module name (last path component) or the functional op
    what: str  # op or block type, with its kernel when that says something
    shape: tuple | None
    part: str
    kind: str  # weights | pool | merge | other | io
    cluster: str  # path of the innermost drawn block around it ("" = none)
    op: str = ""  # the primitive op, when the box is one op


@dataclass
class Cluster:
    path: str
    label: str
    part: str
    children: list = field(default_factory=list)  # cluster paths
    boxes: list = field(default_factory=list)  # box ids


@dataclass
class View:
    """The network at one depth: boxes, clusters and edges, in a stable order."""

    name: str
    boxes: dict
    clusters: dict
    edges: list  # (from box, to box, aux edge)
    legend: list  # lines
    depth: int
    orders: list = field(default_factory=list)  # branch heads to keep left to right


def view(compiled, depth: int = 1, fuse: bool = False) -> View:
    """Collapse the lowered graph to ``depth`` levels of modules (0: every op).

    ``fuse`` draws a weight layer and the BatchNorm / ReLU right after it as one box
    (``conv2d 3x3 + bn + relu``); a block left holding that one box is drawn as the box.
    """
    g = compiled.graph
    mods = g.modules
    boxes: dict = {}
    rep: dict = {}  # node -> the id of the box that shows it
    for node in g:
        parts = node.path.split(".") if node.path else []
        if depth and len(parts) >= depth:
            path = ".".join(parts[:depth])
            rep[node] = path
            if path not in boxes:
                boxes[path] = _module_box(path, mods[path])
        elif node.is_module:
            rep[node] = node.name
            boxes[node.name] = _module_box(node.name, mods[node.name])
        else:
            rep[node] = node.name
            boxes[node.name] = _op_box(node)
    clusters: dict = {}
    for box in boxes.values():
        path = box.cluster
        child = None
        while path:
            c = clusters.get(path)
            if c is None:
                m = mods[path].module
                label = f"{path.rsplit('.', 1)[-1]}  ({m.type})" if m.kind != "sequential" else path.rsplit(".", 1)[-1]
                c = clusters[path] = Cluster(path, label, m.part)
            if child is None:
                c.boxes.append(box.id)
            elif child not in c.children:
                c.children.append(child)
            child, path = path, path.rpartition(".")[0]
    edges, seen = [], set()
    for u, v in g.edges():
        ru, rv = rep[u], rep[v]
        if ru != rv and (ru, rv) not in seen:
            seen.add((ru, rv))
            edges.append((ru, rv, boxes[rv].part != "main"))
    if fuse:
        edges = _fuse(boxes, clusters, edges, mods)
    return View(compiled.name, boxes, clusters, edges, _legend(compiled), depth, _branch_orders(boxes, edges))


_FOLLOWERS = {"batchnorm2d": "bn", "relu": "relu"}


def _fuse(boxes: dict, clusters: dict, edges: list, mods: dict) -> list:
    """Fold BatchNorm and ReLU boxes into the weight layer before them; dissolve one-box blocks."""
    preds: dict = {}
    succs: dict = {}
    for a, b, _ in edges:
        preds.setdefault(b, []).append(a)
        succs.setdefault(a, []).append(b)
    into: dict = {}
    for box_id in list(boxes):
        b = boxes[box_id]
        op = b.op
        if op not in _FOLLOWERS or len(preds.get(box_id, ())) != 1:
            continue
        p = boxes[preds[box_id][0]]
        if p.kind != "weights" or not p.op or len(succs.get(p.id, ())) != 1 or p.cluster != b.cluster or p.part != b.part:
            continue
        p.what = _brief_text(p.what) + f" + {_FOLLOWERS[op]}"
        p.shape = b.shape
        into[box_id] = p.id
        succs[p.id] = succs.get(box_id, [])
        for s in succs[p.id]:
            preds[s] = [p.id if x == box_id else x for x in preds[s]]
        del boxes[box_id]
        clusters_of = clusters.get(b.cluster)
        if clusters_of is not None:
            clusters_of.boxes.remove(box_id)
    out, seen = [], set()
    for a, b, aux in edges:
        a, b = into.get(a, a), into.get(b, b)
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b, aux))
    _dissolve(boxes, clusters, mods)
    return out


def _dissolve(boxes: dict, clusters: dict, mods: dict) -> None:
    """A block that holds a single box (BasicConv2d, fused: conv + bn + relu) is drawn as that box."""
    for path in sorted(clusters, key=lambda p: -p.count(".")):
        c = clusters[path]
        if len(c.boxes) == 1 and not c.children:
            box = boxes[c.boxes[0]]
            box.name = path.rsplit(".", 1)[-1]
            box.what = _block_words(mods[path].module)[0]
            box.cluster = _parent(path)
            del clusters[path]
            parent = clusters.get(box.cluster)
            if parent is not None:
                parent.children.remove(path)
                parent.boxes.append(box.id)


def _branch_orders(boxes: dict, edges: list) -> list:
    """The first boxes of parallel branches, in spec order, to be kept left to right.

    A successor that is a merge (an identity branch), an aux head, or reachable from a sibling
    is left out: it sits lower down.
    """
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from(boxes)
    dag.add_edges_from((a, b) for a, b, _ in edges)
    out = []
    for node in boxes:
        succ = [s for s in dag.successors(node) if boxes[s].kind != "merge" and boxes[s].part == boxes[node].part]
        if len(succ) < 2:
            continue
        below = set()
        for s in succ:
            below |= nx.descendants(dag, s)
        heads = [s for s in succ if s not in below]
        if len(heads) > 1:
            out.append(heads)
    return out


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _module_box(path: str, span: Span) -> Box:
    m = span.module
    shape = span.output.meta.get("shape")
    name = path.rsplit(".", 1)[-1]
    if m.kind == "op":
        return Box(path, name, short_op(m.type, m.args), shape, m.part, _kind(m.type), _parent(path), m.type)
    what, kind = _block_words(m)
    return Box(path, name, what, shape, m.part, kind, _parent(path))


def _block_words(m) -> tuple:
    """('BasicConv2d 3x3/2', 'weights'): a block's type and, when it is short, what it computes."""
    cores = [x for x in m.walk() if x.kind == "op" and (OPS[x.type].weight_layer or x.type in _POOL_OPS)]
    kind = "weights" if any(OPS[x.type].weight_layer for x in cores) else ("pool" if cores else "other")
    steps = [_brief(x.type, x.args) for x in cores]
    if m.kind == "sequential":
        what = " → ".join(steps) if 0 < len(steps) <= 3 else f"Sequential ({len(m.children)})"
    elif len(steps) == 1 and " " in steps[0]:  # BasicConv2d 7x7/2: which convolution it wraps
        what = f"{m.type} {steps[0].split(' ', 1)[-1]}"
    else:
        what = m.type
    return what, kind


def _op_box(node: Node) -> Box:
    op, shape = node.op, node.meta["shape"]
    if op == "input":
        return Box(node.name, "input", "", shape, "main", "io", "")
    if OPS[op].merge:
        return Box(node.name, op, "", shape, node.part, "merge", node.path)
    return Box(node.name, op, short_op(op, node.attrs) if short_op(op, node.attrs) != op else "", shape, node.part,
               _kind(op), node.path, op)


def _brief(op: str, attrs: dict) -> str:
    """'conv 3x3/2', 'maxpool 3x3', 'linear': the short words inside a collapsed box."""
    return _brief_text(short_op(op, attrs))


def _brief_text(text: str) -> str:
    return text.replace("conv2d", "conv").replace("pool2d", "pool")


def _kind(op: str) -> str:
    if OPS[op].weight_layer:
        return "weights"
    if op in _POOL_OPS:
        return "pool"
    if OPS[op].merge:
        return "merge"
    return "other"


def _legend(c) -> list:
    t = c.analysis.totals
    lines = [f"{c.name}  ({dims(c.expanded.input)} → {dims(c.analysis.output)})"]
    if len(t.params_by_part) > 1:
        lines.append(f"params: {t.params:,} training, {t.params_eval:,} eval")
    else:
        lines.append(f"params: {t.params:,}")
    lines.append(f"MACs (eval, batch 1): {t.macs:,} ({human(t.macs)})")
    lines.append(f"depth: {t.depth} weight layers")
    return lines


# --- Graphviz DOT -----------------------------------------------------------------------------

def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _dot_string(text: str) -> str:
    """A quoted DOT ID."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(v: View) -> str:
    """Graphviz source; deterministic, so a hash of it tells whether an SVG is stale."""
    out = [f"digraph {_dot_string(v.name)} {{",
           '  graph [rankdir=TB, nodesep=0.25, ranksep=0.3, fontname="Helvetica", fontsize=11, '
           'labelloc=t, labeljust=l, newrank=true];',
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, margin="0.12,0.04", penwidth=1.2];',
           '  edge [color="#555555", arrowsize=0.6, penwidth=1.0];']
    out.append(f"  label=<{_legend_html(v)}>;")
    loose = _loose_heads(v)
    for member in _members(v, None):
        _dot_member(v, member, out, "  ", loose)
    for a, b, aux in v.edges:
        style = ' [style=dashed, color="#d2691e"]' if aux else ""
        out.append(f"  {_dot_string(a)} -> {_dot_string(b)}{style};")
    for heads in v.orders:  # parallel branches left to right in spec order
        out.append(f"  {{rank=same; {' -> '.join(_dot_string(h) for h in heads)} [style=invis];}}")
    out.append("}")
    return "\n".join(out) + "\n"


def _legend_html(v: View) -> str:
    rows = [f'<tr><td align="left"><b>{_html(v.legend[0])}</b></td></tr>']
    rows += [f'<tr><td align="left">{_html(line)}</td></tr>' for line in v.legend[1:]]
    if any(b.part != "main" for b in v.boxes.values()):
        rows.append(f'<tr><td align="left"><font color="{_STYLE["aux"][1]}">dashed orange: aux head (training only)</font></td></tr>')
    return f'<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{"".join(rows)}</table>'


def _members(v: View, cluster: Cluster | None) -> list:
    """What a cluster (None: the top level) holds, boxes and clusters, in *reverse* network order.

    dot tends to lay the members of one rank out right to left in the order they are declared
    (measured with Graphviz 2.43 on every shipped spec at depths 1-4), so declaring them backwards
    puts parallel branches left to right in spec order. Layout only: the graph is the same.
    """
    order = {box_id: i for i, box_id in enumerate(v.boxes)}
    if cluster is None:
        members = [("box", b) for b in v.boxes if not v.boxes[b].cluster]
        members += [("cluster", p) for p in v.clusters if p.count(".") == 0 or _parent(p) not in v.clusters]
    else:
        members = [("box", b) for b in cluster.boxes] + [("cluster", p) for p in cluster.children]

    def first(member):
        kind, key = member
        if kind == "box":
            return order[key]
        c = v.clusters[key]
        return min([order[b] for b in c.boxes] + [first(("cluster", ch)) for ch in c.children], default=0)

    return sorted(members, key=first, reverse=True)


def _loose_heads(v: View) -> set:
    """Branch heads that sit directly in a block beside branches that are blocks of their own.

    dot orders plain nodes and clusters of one rank separately; such a head is wrapped in an
    invisible cluster so that all branches are ordered alike.
    """
    out = set()
    for heads in v.orders:
        homes = {v.boxes[h].cluster for h in heads}
        if len(homes) > 1:
            top = min(homes, key=lambda home: (len(home), home))  # not the set's order: that changes from run to run
            out.update(h for h in heads if v.boxes[h].cluster == top)
    return out


def _dot_member(v: View, member: tuple, out: list, ind: str, loose: set) -> None:
    kind, key = member
    if kind == "box":
        if key in loose:
            out.append(f'{ind}subgraph {_dot_string("cluster_" + key + " (branch)")} {{ style=invis; margin=0; label=""; '
                       f'{_dot_node(v.boxes[key])} }}')
        else:
            out.append(ind + _dot_node(v.boxes[key]))
        return
    c = v.clusters[key]
    fill, line = _CLUSTER["main" if c.part == "main" else "aux"]
    style = "rounded,dashed,filled" if c.part != "main" else "rounded,filled"
    out.append(f"{ind}subgraph {_dot_string('cluster_' + c.path)} {{")
    out.append(f'{ind}  label=<<b>{_html(c.label)}</b>>; style="{style}"; fillcolor="{fill}"; color="{line}"; '
               f'fontsize=10; labeljust=l; margin=8;')
    for m in _members(v, c):
        _dot_member(v, m, out, ind + "  ", loose)
    out.append(f"{ind}}}")


def _dot_node(b: Box) -> str:
    fill, line = _STYLE["aux" if b.part != "main" and b.kind != "io" else b.kind]
    style = "rounded,filled,dashed" if b.part != "main" else "rounded,filled"
    if b.kind == "merge":
        label = f'<<b>{_html(b.name)}</b><br/><font point-size="9">{dims(b.shape)}</font>>'
        return (f'{_dot_string(b.id)} [shape=ellipse, style="{style.replace("rounded,", "")}", fillcolor="{fill}", color="{line}", '
                f'margin="0.04,0.02", label={label}];')
    what = f'<br/><font point-size="9">{_html(b.what)}</font>' if b.what else ""
    label = f'<<b>{_html(b.name)}</b>{what}<br/><font point-size="9" color="#444444">{dims(b.shape)}</font>>'
    return f'{_dot_string(b.id)} [style="{style}", fillcolor="{fill}", color="{line}", label={label}];'


# --- Mermaid ----------------------------------------------------------------------------------

def to_mermaid(v: View) -> str:
    """A Mermaid flowchart (renders on GitHub); same boxes, clusters and edges as the DOT."""
    ids: dict = {}

    def ident(key: str) -> str:
        if key not in ids:
            base = re.sub(r"[^A-Za-z0-9_]", "_", key).strip("_") or "n"
            name = base if base[0].isalpha() and base.lower() not in _MERMAID_WORDS else f"n_{base}"
            while name in ids.values():
                name += "_"
            ids[key] = name
        return ids[key]

    out = ["flowchart TB"]
    legend = "<br/>".join(_mm(line) for line in v.legend)
    out.append(f'  legend["{legend}"]:::legend')
    placed = set()
    for path, c in v.clusters.items():
        if "." not in path:
            _mm_cluster(v, c, out, "  ", placed, ident)
    for box_id, box in v.boxes.items():
        if box_id not in placed:
            out.append("  " + _mm_node(box, ident))
    for a, b, aux in v.edges:
        out.append(f"  {ident(a)} {'-.->' if aux else '-->'} {ident(b)}")
    for kind, (fill, line) in _STYLE.items():
        dash = ",stroke-dasharray:5 4" if kind == "aux" else ""
        out.append(f"  classDef {kind} fill:{fill},stroke:{line}{dash}")
    out.append("  classDef legend fill:#ffffff,stroke:#bbbbbb,text-align:left")
    return "\n".join(out) + "\n"


_MERMAID_WORDS = {"end", "graph", "flowchart", "subgraph", "style", "classdef", "class", "click", "linkstyle",
                  "direction", "default"}


def _mm(text: str) -> str:
    """Text inside a quoted Mermaid label, with Mermaid's own entity codes."""
    return text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#60;").replace(">", "#62;")


def _mm_cluster(v: View, c: Cluster, out: list, ind: str, placed: set, ident) -> None:
    out.append(f'{ind}subgraph {ident("cluster " + c.path)} ["{_mm(c.label)}"]')
    for child in c.children:
        _mm_cluster(v, v.clusters[child], out, ind + "  ", placed, ident)
    for box_id in c.boxes:
        out.append(f"{ind}  {_mm_node(v.boxes[box_id], ident)}")
        placed.add(box_id)
    out.append(f"{ind}end")
    if c.part != "main":
        out.append(f"{ind}style {ident('cluster ' + c.path)} fill:#fff7f0,stroke:#d2691e,stroke-dasharray:5 4")


def _mm_node(b: Box, ident) -> str:
    cls = "aux" if b.part != "main" and b.kind != "io" else b.kind
    text = f"<b>{_mm(b.name)}</b>" + (f"<br/>{_mm(b.what)}" if b.what else "") + f"<br/>{dims(b.shape)}"
    if b.kind == "merge":
        return f'{ident(b.id)}(["{text}"]):::{cls}'
    return f'{ident(b.id)}["{text}"]:::{cls}'


# --- SVG --------------------------------------------------------------------------------------

def dot_binary() -> str | None:
    return shutil.which("dot")


# dot gets at most this much time and address space: a figure archspec draws takes well under a
# second and 50 MB (docs/draw.md); a huge or pathological graph is refused rather than left to
# hang or to exhaust the machine's memory.
DOT_SECONDS = 60
DOT_MEMORY = 1 << 30


def _limit_dot() -> None:  # in the child, before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (DOT_MEMORY, DOT_MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (DOT_SECONDS, DOT_SECONDS))


def to_svg(dot_text: str, settings: str = "") -> str:
    """Render with Graphviz's ``dot``; the settings and the DOT's hash go into the SVG, so that a
    stale figure can be found without Graphviz."""
    exe = dot_binary()
    if exe is None:
        raise UsageError("SVG output needs Graphviz's 'dot' program (Debian/Ubuntu: apt-get install graphviz); "
                         "write .dot or .mmd instead")
    svg = _run_dot(exe, dot_text)
    mark = f"<!-- archspec-draw: {settings} {HASH_MARK}{dot_hash(dot_text)} -->\n"
    head, sep, rest = svg.partition("<svg")
    return head + mark + sep + rest


def _run_dot(exe: str, dot_text: str) -> str:
    """dot's SVG; every way it can fail (cannot start, crashes, runs out of time or memory) is a GenerateError."""
    instead = "write .dot or .mmd instead, or draw fewer boxes (a smaller --depth)"
    limits = _limit_dot if os.name == "posix" else None
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=dot_text.encode("utf-8"), capture_output=True,
                              timeout=DOT_SECONDS, preexec_fn=limits)
    except subprocess.TimeoutExpired:
        raise GenerateError(f"Graphviz's dot ran for more than {DOT_SECONDS} s and was stopped; {instead}") from None
    except OSError as exc:
        raise GenerateError(f"cannot run Graphviz's dot ({exe}): {exc.strerror or exc}") from None
    said = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
    said = f": {said[-1][:200]}" if said else ""
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else -proc.returncode
        raise GenerateError(f"Graphviz's dot was killed by {name}{said} (it may use {DOT_MEMORY >> 20} MiB and "
                            f"{DOT_SECONDS} s); {instead}")
    if proc.returncode != 0:
        raise GenerateError(f"Graphviz's dot failed with exit status {proc.returncode}{said}; {instead}")
    try:
        return proc.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise GenerateError(f"Graphviz's dot wrote SVG that is not UTF-8; {instead}") from None


def dot_hash(dot_text: str) -> str:
    return hashlib.sha256(dot_text.encode("utf-8")).hexdigest()


def svg_stamp(svg_text: str) -> dict | None:
    """The settings and DOT hash recorded in an SVG written by archspec: {depth, fuse, sha256}."""
    m = re.search(r"archspec-draw: depth=(\d+) fuse=([01]) " + re.escape(HASH_MARK) + r"([0-9a-f]{64})", svg_text)
    return {"depth": int(m.group(1)), "fuse": m.group(2) == "1", "sha256": m.group(3)} if m else None


AUTO_BOXES, AUTO_ROWS = 150, 70  # about what one tall figure shows legibly


def auto_depth(compiled, fuse: bool = False) -> int:
    """The shallowest depth that shows the most detail within AUTO_BOXES boxes and AUTO_ROWS rows."""
    import networkx as nx

    levels = max((p.count(".") + 1 for p in compiled.analysis.modules if p), default=1)
    best, seen = 1, len(view(compiled, 1, fuse).boxes)
    for depth in range(2, levels + 1):
        v = view(compiled, depth, fuse)
        dag = nx.DiGraph(list((a, b) for a, b, _ in v.edges))
        dag.add_nodes_from(v.boxes)
        if len(v.boxes) > AUTO_BOXES or nx.dag_longest_path_length(dag) + 1 > AUTO_ROWS:
            break
        if len(v.boxes) > seen:
            best, seen = depth, len(v.boxes)
    return best


def render(compiled, fmt: str, depth: int | str = 1, fuse: bool = False) -> str:
    """The figure as text: ``fmt`` is dot, svg or mermaid; ``depth`` a number or "auto"."""
    if depth == "auto":
        depth = auto_depth(compiled, fuse)
    v = view(compiled, depth, fuse)
    if fmt == "mermaid":
        return to_mermaid(v)
    dot_text = to_dot(v)
    return to_svg(dot_text, f"depth={depth} fuse={int(fuse)}") if fmt == "svg" else dot_text
