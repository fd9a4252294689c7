"""After analyse, memory: the bytes a network holds at batch N, statically and exactly as torch
holds them.

``measure(compiled, batch, dtype, optimizer)`` runs the generated module *on paper*: it walks the
module tree in the order the generated ``forward`` runs (aux heads right after the layer they read,
as generated code calls them), executes each op's memory rule from the op catalog
(``Op.memory`` in archspec/ops.py: what the op allocates, what autograd keeps, what its backward
allocates) and counts references the way CPython and autograd do:

* a tensor dies when its last holder lets go: the op that reads it, the Python variable of the
  generated ``forward`` that names it (a branch's result stays named until the block returns), the
  argument of a module call (until the call returns), an autograd node that keeps it for backward;
* in-place ReLU (where the generated code writes ``inplace=True``: ``emit.in_place_nodes`` in every
  instance of the item), views (``torch.flatten``, ``permute``, a merge's ``split:`` chunks) and the
  identity allocate nothing; ``torch.cat`` allocates its output and keeps its inputs alive only
  through their variables;
* every tensor has a layout (its strides, ops.py), which decides where torch copies: a reshape that
  cannot be a view, a gradient that cannot be added in place;
* backward runs autograd's nodes in reverse creation order; a gradient reaching a tensor that
  already has one is added in place when it is dense, not a view and the engine holds the only
  reference to it,
  else into a new tensor; parameter gradients are stolen into ``.grad``. ``dispatch_mode=True``
  models a ``TorchDispatchMode`` being active (the oracle's), under which every tensor is
  subclass-like: autograd never adds in place and at::linear adds its bias out of place;
* an optimizer step as torch's single-tensor implementations run it (the CPU default).

Everything is counted in bytes of tensor storage at op boundaries (what a ``TorchDispatchMode``
that tracks storages sees): kernel workspaces, allocator rounding and Python scalars are not. The
conventions are stated in docs/cli.md ("Memory"); tests/test_memory.py is the torch oracle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .emit import in_place_nodes
from .errors import ArchspecError
from .expand import Absent, Apply, Func, Group, Loop, Merge
from .lower import nodes_by_item
from .ops import OPS, MemCtx, contiguous, dense, done, grad, iterated, k

DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2}
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")
INDEX_BYTES = 8  # int64: targets, num_batches_tracked
STEP_BYTES = 4  # Adam's per-parameter `step`, a float32 scalar whatever the model's dtype


class MemoryRuleError(ArchspecError):
    """An op whose memory archspec does not know (yet): the network cannot be counted."""

    stage = "memory"


def _shape(node) -> tuple:
    """A node's output shape, without the batch (analysis metadata)."""
    return node.meta["shape"]


def _tensors(node) -> tuple:
    """A node's (name, shape, is_buffer) parameters and buffers (analysis metadata)."""
    return node.meta.get("tensors", ())


@dataclass
class Memory:
    """Bytes of one network at a batch size and dtype (docs/cli.md, "Memory")."""

    batch: int
    dtype: str
    optimizer: str | None  # None: no training step was measured
    layers: dict  # node name -> {"output_bytes", "saved_bytes"}
    modules: dict  # module path -> {"output_bytes", "saved_bytes"}
    params_bytes: int  # every part (training)
    params_eval_bytes: int  # the main network (inference)
    buffers_bytes: int
    buffers_eval_bytes: int
    input_bytes: int
    inference_peak: int  # params_eval + buffers_eval + input + live activations at the worst point
    inference_peak_at: str
    grads_bytes: int = 0
    optimizer_bytes: int = 0
    saved_bytes: int = 0  # distinct tensors autograd keeps over a training step (loss included)
    training_peak: int = 0
    training_peak_at: tuple = ()  # (phase, layer): forward | loss | backward | optimizer

    def to_json(self) -> dict:
        out = {"batch": self.batch, "dtype": self.dtype, "params_bytes": self.params_bytes,
               "params_eval_bytes": self.params_eval_bytes, "buffers_bytes": self.buffers_bytes,
               "buffers_eval_bytes": self.buffers_eval_bytes, "input_bytes": self.input_bytes,
               "inference_peak_bytes": self.inference_peak, "inference_peak_at": self.inference_peak_at}
        if self.optimizer is not None:
            out.update({"optimizer": self.optimizer, "grads_bytes": self.grads_bytes,
                        "optimizer_bytes": self.optimizer_bytes, "saved_bytes": self.saved_bytes,
                        "training_peak_bytes": self.training_peak,
                        "training_peak_at": {"phase": self.training_peak_at[0], "layer": self.training_peak_at[1]}})
        return out


def measure(c, batch: int = 1, dtype: str = "float32", optimizer: str | None = None,
            dispatch_mode: bool = False) -> Memory:
    """Memory of an inference forward and, with an optimizer, of a training step.

    >>> m = measure(compile_spec("specs/resnet18.yaml"), batch=32, optimizer="sgd")   # doctest: +SKIP
    >>> m.saved_bytes, m.training_peak                                              # doctest: +SKIP
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
    isz = DTYPES[dtype]
    g = c.graph
    params, buffers = _tensor_bytes(g, isz, aux=True)
    params_eval, buffers_eval = _tensor_bytes(g, isz, aux=False)
    input_bytes = batch * math.prod(g.input_shape) * isz

    ev = _Run(c, batch, isz, train=False, mode=dispatch_mode)
    ev.forward()
    mem = Memory(batch, dtype, optimizer, {}, {}, sum(params), sum(params_eval), sum(buffers), sum(buffers_eval),
                 input_bytes, sum(params_eval) + sum(buffers_eval) + ev.sim.peak, ev.sim.where[1])
    kept, size = {}, None  # node -> storages it keeps for backward; storage -> bytes
    if optimizer is not None:
        tr = _Run(c, batch, isz, train=True, mode=dispatch_mode)
        tr.step(optimizer, params)
        state = _optimizer_bytes(optimizer, params)
        mem.grads_bytes, mem.optimizer_bytes = sum(params), state
        mem.saved_bytes = sum(tr.sim.size[s] for s in tr.kept_ever)
        mem.training_peak = sum(params) + sum(buffers) + state + tr.sim.peak
        mem.training_peak_at = tr.sim.where
        kept, size = tr.kept_by_node, tr.sim.size
    for node in g:
        if node.op != "input":
            mem.layers[node.name] = {"output_bytes": batch * math.prod(_shape(node)) * isz,
                                     "saved_bytes": sum(size[s] for s in kept.get(node, ())) if size is not None else None}
    mem.modules = _per_module(g, mem, kept, size)
    return mem


def timeline(c, batch: int = 1, dtype: str = "float32", optimizer: str | None = None,
             dispatch_mode: bool = False) -> list:
    """(bytes, layer) after every call that allocates, in order: an inference forward or, with an
    optimizer, a steady-state training step. The bytes are what the run holds beyond parameters,
    buffers and optimizer state (its input and labels, activations, gradients); the peaks of
    ``measure`` are the largest of them plus those. tests/test_memory.py compares it with torch's
    (archspec/measure.py) call by call."""
    isz = DTYPES[dtype]
    run = _Run(c, batch, isz, train=optimizer is not None, mode=dispatch_mode)
    run.sim.timeline = []
    if optimizer is None:
        run.forward()
    else:
        run.step(optimizer, _tensor_bytes(c.graph, isz, aux=True)[0])
    return run.sim.timeline


def enclosing(path: str):
    """A module path and every path that contains it, out to the model ("")."""
    while True:
        yield path
        if not path:
            return
        path = path[:path.rfind(".")] if "." in path else ""


def rule(node, ctx: MemCtx) -> tuple:
    """An op's memory programs for one call; MemoryRuleError when the catalog has none for it."""
    op = OPS[node.op]
    programs = op.memory(ctx) if op.memory is not None else None
    if programs is None:
        raise MemoryRuleError(f"{node.name}: {node.op} has no memory rule yet, so the network's memory and time cannot "
                              "be counted (docs/cli.md#memory lists the ops that have one)", node.loc, node.name)
    return programs


def _written_in_place(c) -> set:
    """The nodes the generated code runs in place: its rule (``emit.in_place_nodes``) holds in every
    instance of the spec item (generate.py's ``runs_in_place``)."""
    safe = in_place_nodes(c.graph)
    return {node for nodes in nodes_by_item(c.expanded.model, c.graph).values()
            if nodes and all(n in safe for n in nodes) for node in nodes}


def execution_order(c, train: bool = False) -> list:
    """The graph's nodes in the order the generated module's forward runs them (aux heads right
    after the layer they read, in training); a functional identity runs nothing and is left out."""
    run = _Run(c, 1, 4, train)
    run.forward()
    return run.order


def contexts(c, batch: int, isz: int) -> dict:
    """Each node's MemCtx in an eval forward at ``batch``: what its rule sees, its inputs' layouts
    included (archspec/roofline.py charges what the rule allocates)."""
    run = _Run(c, batch, isz, train=False)
    run.forward()
    return run.ctxs


def _tensor_bytes(g, isz: int, aux: bool) -> tuple:
    """Bytes of each parameter tensor (model.parameters() order) and of each buffer."""
    params, buffers = [], []
    for path, span in g.modules.items():
        if span.module.kind != "op" or (not aux and span.module.part != "main"):
            continue
        for name, shape, is_buffer in _tensors(g.node(path)):
            if is_buffer:
                buffers.append(INDEX_BYTES if name == "num_batches_tracked" else math.prod(shape) * isz)
            else:
                params.append(math.prod(shape) * isz)
    return params, buffers


def _optimizer_bytes(optimizer: str, params: list) -> int:
    if optimizer == "sgd":
        return 0
    if optimizer == "sgd-momentum":
        return sum(params)  # momentum_buffer
    return 2 * sum(params) + STEP_BYTES * len(params)  # exp_avg, exp_avg_sq, step


def _per_module(g, mem: Memory, kept: dict, size: dict | None) -> dict:
    """Per module path: its output's bytes and the distinct tensors its nodes keep for backward."""
    out = {}
    storages: dict = {}
    if size is not None:
        for node, sids in kept.items():
            for path in enclosing(node.path):
                storages.setdefault(path, set()).update(sids)
    for path, span in g.modules.items():
        shape = span.output.meta.get("shape") if span.output is not None else None
        out[path] = {"output_bytes": mem.batch * math.prod(shape) * DTYPES[mem.dtype] if shape is not None else 0,
                     "saved_bytes": sum(size[s] for s in storages.get(path, ())) if size is not None else None}
    return out


# --- the simulation ---------------------------------------------------------------------------

class _Sim:
    """Tensor storages with reference counts; the peak of live bytes over measuring points."""

    def __init__(self):
        self.size: dict = {}
        self.refs: dict = {}
        self.live = 0
        self.peak = 0
        self.where: tuple = ("", "")
        self.phase = "forward"
        self._next = 0
        self.timeline: list | None = None  # live bytes at every mark, when asked for (tests)

    def alloc(self, nbytes: int) -> int:
        sid = self._next
        self._next += 1
        self.size[sid] = nbytes
        self.refs[sid] = 1
        self.live += nbytes
        return sid

    def inc(self, sid: int) -> None:
        self.refs[sid] += 1

    def dec(self, sid: int) -> None:
        left = self.refs[sid] - 1
        if left:
            self.refs[sid] = left
        else:
            del self.refs[sid]
            self.live -= self.size[sid]

    def mark(self, where: str) -> None:
        if self.timeline is not None:
            self.timeline.append((self.live, where))
        if self.live > self.peak:
            self.peak = self.live
            self.where = (self.phase, where)


@dataclass(eq=False)
class _Record:
    """An autograd node (one op call): what it keeps and how its backward runs."""

    where: str  # the node's name, or the loss step's
    ctx: MemCtx
    bwd: object  # a backward program, or a function of the incoming gradients' layouts that makes one
    fns: list  # per input: (the record that made it, which of its results), or None: no gradient wanted
    kept: dict = field(default_factory=dict)  # tag -> storage
    slots: int = 1  # its results (a split's chunks: one node for all)


@dataclass(frozen=True)
class _Value:
    sid: int
    fn: object = None  # the record whose output this is, when autograd tracks it
    slot: int = 0  # which of the record's results
    layout: tuple | None = None  # strides (ops.py, "layouts"); None: contiguous
    view: bool = False  # a view of another tensor (an in-place op on it costs more in backward)

    @property
    def source(self):
        return None if self.fn is None else (self.fn, self.slot)


@dataclass(frozen=True)
class _Grad:
    sid: int
    nbytes: int
    shape: tuple = ()  # with the batch
    layout: tuple | None = None
    view: bool = False  # a view of another gradient (a slice, a permutation), which keeps it alive

    @property
    def reusable(self) -> bool:
        """Whether autograd may add another gradient to this one in place (can_accumulate_inplace):
        dense, and the only holder of its storage, which a view never is (its base holds it too)."""
        return not self.view and dense(self.shape, self.layout)


class _Run:
    """One run of the generated module: an inference forward, or a whole training step."""

    def __init__(self, c, batch: int, isz: int, train: bool, mode: bool = False):
        self.c = c
        self.g = c.graph
        self.n = batch
        self.isz = isz
        self.train = train
        self.sim = _Sim()
        self.records: list = []
        self.kept_by_node: dict = {}  # Node -> storages it keeps for backward
        self.kept_ever: set = set()
        self.order: list = []  # nodes in the order the generated forward runs them
        self.ctxs: dict = {}  # node -> the MemCtx its rule saw
        self.mode = mode
        self.engine = _Engine(self.sim, not mode)
        self.in_place = _written_in_place(c)

    # -- forward: the generated code's statements, in order --
    def forward(self) -> list:
        """Run ``model(x)``; returns the outputs (main, then aux heads in training), owned."""
        ex = self.c.expanded
        x = _Value(self.sim.alloc(self.n * math.prod(ex.input) * self.isz))  # the caller's input
        env = {"x": self._hold(x)}
        heads: dict = {}
        for head in ex.aux:
            heads.setdefault(head.source, []).append(head)
        for step in ex.model.body:
            self.item(step, env, "x", "x")
            name = step.module.name if isinstance(step, Apply) else step.name if isinstance(step, Absent) else None
            for head in heads.get(name, ()) if self.train else ():
                env["aux " + head.name] = self.call(head.module, env["x"])
        outs = [env.pop("x")] + [env.pop("aux " + h.name) for h in ex.aux if "aux " + h.name in env]
        self._release(env)
        return outs

    def _hold(self, v: _Value) -> _Value:
        self.sim.inc(v.sid)
        return v

    def _assign(self, env: dict, var: str, v: _Value) -> None:
        old = env.get(var)
        env[var] = v
        if old is not None:
            self.sim.dec(old.sid)

    def _release(self, env: dict) -> None:
        for v in env.values():
            self.sim.dec(v.sid)

    def call(self, mod, arg: _Value) -> _Value:
        """A module call; ``arg`` stays held by the caller until it returns."""
        if mod.kind == "op":
            return self.op(self.g.node(mod.path), [arg])
        if mod.kind == "sequential":  # for module in self: input = module(input)
            cur = self._hold(arg)
            for child in mod.children:  # the modules it registered, in order (groups and loops opened)
                out = self.call(child, cur)
                self.sim.dec(cur.sid)
                cur = out
            return cur
        env = {"x": self._hold(arg)}
        self.body(mod.body, env, "x", "x")
        out = env.pop("x")
        self._release(env)  # branch results stay named until the block returns
        return out

    def body(self, steps: list, env: dict, src: str, dst: str) -> None:
        for step in steps:
            self.item(step, env, src, dst)
            src = dst

    def item(self, step, env: dict, src: str, dst: str) -> None:
        """One statement of a generated forward, ``dst = ...(src)`` (a group or a loop: its statements)."""
        if isinstance(step, Func) and step.op != "identity":
            self._assign(env, dst, self.op(step.node, [env[src]]))
        elif isinstance(step, Merge) and step.node is None:  # the other branches absent: dst = the branch alone
            self._assign(env, dst, self._hold(self._branches(step, env, src)[0]))
        elif isinstance(step, Merge):
            self._assign(env, dst, self.op(step.node, self._branches(step, env, src)))
        elif isinstance(step, Apply):
            self._assign(env, dst, self.call(step.module, env[src]))
        elif isinstance(step, Group):
            self.body(step.steps, env, src, dst)
        elif isinstance(step, Loop) and step.iterations:
            for iteration in step.iterations:
                self.body(iteration.steps, env, src, dst)
                src = dst
        elif src != dst:  # an identity, an absent module or group, a loop of no iteration: dst = src
            self._assign(env, dst, self._hold(env[src]))

    def _branches(self, step: Merge, env: dict, src: str) -> list:
        """Each branch writes a variable of its own (an empty branch is the merge's input). With
        ``split:``, one statement first names every chunk (``x1, x2 = x.chunk(2, dim=1)``), and
        the chunks stay named until the block returns. The generated forward computes a
        conditional branch last, where it joins it."""
        heads = [src] * len(step.branches)
        if step.split is not None:
            heads = [f"{id(step)} chunk {j}" for j in range(len(step.branches))]
            for var, chunk in zip(heads, self.call_op(step.chunks, [env[src]])):
                env[var] = chunk
        outs: dict = {}
        conds = step.item.conds if step.present is not None else None
        last = [k for k, j in enumerate(step.present or ()) if conds and conds[j] is not None]
        for j in sorted(range(len(step.branches)), key=lambda k: k in last):
            branch = step.branches[j]
            if branch:
                local = f"{id(step)} {j}"
                self.body(branch, env, heads[j], local)
                outs[j] = env[local]
            else:
                outs[j] = env[heads[j]]
        return [outs[j] for j in range(len(step.branches))]

    def op(self, node, ins: list) -> _Value:
        """Run one op's forward program; inputs are borrowed, the result is owned."""
        return self.call_op([node], ins)[0]

    def call_op(self, nodes: list, ins: list) -> list:
        """One call of an op, with one result per node (a split's chunks are one call)."""
        node = nodes[0]
        self.order.extend(nodes)
        params = tuple(math.prod(shape) * self.isz for _, shape, buf in _tensors(node) if not buf)
        needs = tuple(v.fn is not None for v in ins)
        ctx = MemCtx(tuple(_shape(i) for i in node.inputs), _shape(node), node.attrs, self.n, self.isz, self.train,
                     needs, params, node in self.in_place, tuple(v.layout for v in ins), self.mode,
                     tuple(v.view for v in ins))
        self.ctxs[node] = ctx
        fwd, bwd = rule(node, ctx)
        rec = _Record(node.name, ctx, bwd, [v.source for v in ins], slots=len(nodes)) if (
            self.train and bwd is not None and (any(needs) or params)) else None
        results = self._run_forward(fwd, node.name, {f"x{i}": v for i, v in enumerate(ins)}, rec)
        if rec is None:
            return [_Value(sid, ins[0].fn if bwd is None else None, ins[0].slot, *result) for sid, *result in results]
        self.records.append(rec)
        self.kept_by_node.setdefault(node, set()).update(rec.kept.values())
        self.kept_ever.update(rec.kept.values())
        return [_Value(sid, rec, j, *result) for j, (sid, *result) in enumerate(results)]

    def _run_forward(self, fwd: tuple, where: str, inputs: dict, rec) -> list:
        """Execute a forward program; returns each result's (storage, layout, whether a view), each
        storage with a reference for the caller."""
        sim = self.sim
        temps: dict = {}  # tag -> (storage, layout)
        results = []
        for ins in fwd:
            if ins[0] == "k":
                for tag, nbytes, *layout in ins[1:]:
                    temps[tag] = (sim.alloc(nbytes), layout[0] if layout else None)
                sim.mark(where)
            elif ins[0] == "keep" and rec is not None:
                for tag in ins[1:]:
                    rec.kept[tag] = temps[tag][0] if tag in temps else inputs[tag].sid
                    sim.inc(rec.kept[tag])
            elif ins[0] == "drop":
                for tag in ins[1:]:
                    sim.dec(temps.pop(tag)[0])
            elif ins[0] == "ret":
                _, tag, layout = ins
                if tag in temps:
                    (sid, own), view = temps.pop(tag), False
                else:  # the input itself, or a view of it
                    sid, own, view = inputs[tag].sid, inputs[tag].layout, inputs[tag].view
                    sim.inc(sid)
                results.append((sid, own, view) if layout is ... else (sid, layout, True))
        for left, _ in temps.values():  # what nothing keeps dies with the op
            sim.dec(left)
        return results

    # -- the training step: forward, loss, backward, optimizer --
    def step(self, optimizer: str, params: list) -> None:
        sim = self.sim
        target = sim.alloc(self.n * INDEX_BYTES)  # the caller's labels
        outs = self.forward()
        sim.phase = "loss"
        loss = self.loss(outs, target)
        sim.phase = "backward"
        self.engine.backward(loss, self.records, self.isz)
        sim.phase = "optimizer"
        _optimizer_step(sim, optimizer, params)

    def loss(self, outs: list, target: int) -> _Value:
        """The training loss: ``F.cross_entropy`` of the logits, and with aux heads the generated
        ``loss`` (+ weight x cross-entropy of each head), evaluated left to right; the outputs die
        when it returns."""
        weights = [None] + [h.loss_weight for h in self.c.expanded.aux][:len(outs) - 1]
        total = None
        for out, weight in zip(outs, weights):
            term = self._cross_entropy(out, target)
            if weight is not None:
                term = self._scalar_op(f"{weight} x", [term], lambda m: (k(("gx", m.isz)), grad(0, "gx"), done()))
            if total is not None:
                term = self._scalar_op("+", [total, term], lambda m: (grad(0, "g", "pass"), grad(1, "g", "pass"),
                                                                     done()))
            total = term
        self._release({i: out for i, out in enumerate(outs)})
        return total

    def _cross_entropy(self, out: _Value, target: int) -> _Value:
        """log_softmax (kept: its result) then nll_loss (kept: the labels and total_weight)."""
        classes = _shape(self.g.output)
        nc = self.n * math.prod(classes) * self.isz
        ctx = MemCtx((classes,), (), {}, self.n, self.isz, True, (True,), ())
        rec = _Record("loss", ctx, (k(("gn", nc)), done("g", "tw"), k(("gl", nc)), grad(0, "gl"), done("gn", "ls")),
                      [out.source])
        sim = self.sim
        ls = sim.alloc(nc)
        sim.mark("cross_entropy")
        value, tw = sim.alloc(self.isz), sim.alloc(self.isz)
        sim.mark("cross_entropy")
        for tag, sid in (("ls", ls), ("tw", tw), ("target", target)):
            sim.inc(sid)
            rec.kept[tag] = sid
        sim.dec(ls)
        sim.dec(tw)
        self.records.append(rec)
        self.kept_ever.update(rec.kept.values())
        return _Value(value, rec)

    def _scalar_op(self, what: str, ins: list, bwd) -> _Value:
        """An op on 0-dim losses (a weight, a sum); its inputs are temporaries that die here."""
        sim = self.sim
        ctx = MemCtx(tuple(() for _ in ins), (), {}, 1, self.isz, True, tuple(True for _ in ins), ())
        rec = _Record(what, ctx, bwd(ctx), [v.source for v in ins])
        out = sim.alloc(self.isz)
        sim.mark(what)
        for v in ins:
            sim.dec(v.sid)
        self.records.append(rec)
        return _Value(out, rec)


class _Engine:
    """Autograd's backward: nodes in reverse creation order (the engine runs the ready node created
    last), gradients handed to the node that made each input."""

    def __init__(self, sim: _Sim, inplace_accumulation: bool):
        self.sim = sim
        self.inplace_accumulation = inplace_accumulation
        self.buffers: dict = {}  # (record, result) -> the gradient waiting for it

    def backward(self, loss: _Value, records: list, isz: int) -> None:
        """``loss.backward()``; the seed gradient is held by Python until backward returns."""
        sim = self.sim
        seed = sim.alloc(isz)
        sim.mark("loss.backward")
        sim.inc(seed)
        self.buffers = {loss.source: _Grad(seed, isz)}
        for rec in reversed(records):
            grads = [self.buffers.pop((rec, j), None) for j in range(rec.slots)]
            if any(g is not None for g in grads):
                _Node(self, rec, grads).run()
        sim.dec(seed)
        sim.dec(loss.sid)

    def deliver(self, queue: list, where: str) -> None:
        """Each gradient reaches the node that made the input: stored if it is the first, else added,
        in place when it is dense and the engine holds the only reference to it (InputBuffer::
        accumulate; never a view, whose base holds its storage too), else into a new tensor."""
        sim = self.sim
        still: list = []  # outputs the engine's vector holds until the node is done
        for src, val in queue:
            old = self.buffers.get(src)
            if src is None:
                sim.dec(val.sid)
            elif old is None:
                self.buffers[src] = val
            else:
                still.append(val)
                if not (self.inplace_accumulation and old.reusable and sim.refs[old.sid] == 1):  # else old.add_(new)
                    layout = iterated(old.shape, [(old.shape, old.layout), (val.shape, val.layout)])
                    self.buffers[src] = _Grad(sim.alloc(old.nbytes), old.nbytes, old.shape, layout)
                    sim.mark(where)
                    sim.dec(old.sid)
        for val in still:
            sim.dec(val.sid)


class _Node:
    """One autograd node running its backward program."""

    def __init__(self, engine: _Engine, rec: _Record, grads: list):
        self.engine = engine
        self.sim = engine.sim
        self.rec = rec
        self.temps: dict = {}
        self.kept = dict(rec.kept)
        if rec.slots == 1:
            self.holding = {"g": grads[0]}
            self.program = rec.bwd(grads[0].layout) if callable(rec.bwd) else rec.bwd
        else:  # one node for several results: what reached each, False for none
            self.holding = {f"g{j}": g for j, g in enumerate(grads) if g is not None}
            self.program = rec.bwd([False if g is None else g.layout for g in grads])
        self.queue: list = []

    def run(self) -> None:
        for ins in self.program:
            getattr(self, "_" + ins[0])(*ins[1:])
        for t in self.temps.values():
            self.sim.dec(t.sid)
        for sid in self.kept.values():
            self.sim.dec(sid)
        for h in self.holding.values():
            self.sim.dec(h.sid)

    def _k(self, *allocs) -> None:
        for tag, nbytes, *layout in allocs:
            self.temps[tag] = _Grad(self.sim.alloc(nbytes), nbytes, (), layout[0] if layout else None)
        self.sim.mark(self.rec.where)

    def _grad(self, i: int, tag: str, how: str, layout) -> None:
        ctx = self.rec.ctx
        shape = (ctx.n, *ctx.ins[i]) if ctx.ins[i] else ()
        if how == "own":
            t = self.temps.pop(tag)
            val = _Grad(t.sid, t.nbytes, shape, t.layout)
        else:  # the same tensor, or a view of it: another reference to its storage
            src = self.holding[tag] if tag in self.holding else self.temps[tag]
            self.sim.inc(src.sid)
            if how == "slice":  # a channel slice keeps the strides of the whole gradient
                layout = contiguous((ctx.n, *ctx.out)) if src.layout is None else src.layout
            val = _Grad(src.sid, ctx.bytes(ctx.ins[i]), shape, src.layout if layout is ... else layout,
                        how != "pass" or src.view)
        self.queue.append((self.rec.fns[i], val))

    def _pgrad(self, *tags) -> None:
        for tag in tags:
            self.temps.pop(tag)  # into .grad, alive until the next zero_grad

    def _drop(self, *tags) -> None:
        for tag in tags:
            if tag in self.temps:
                self.sim.dec(self.temps.pop(tag).sid)
            elif tag in self.kept:
                self.sim.dec(self.kept.pop(tag))
            elif tag in self.holding:
                self.sim.dec(self.holding.pop(tag).sid)

    def _done(self, *tags) -> None:
        self._drop(*(tags or [*self.holding, *self.kept]))
        self.engine.deliver(self.queue, self.rec.where)
        self.queue = []


def _optimizer_step(sim: _Sim, optimizer: str, params: list) -> None:
    """``optimizer.step()`` in steady state (state allocated by an earlier step). SGD, with or
    without momentum, updates in place; Adam and AdamW compute, per parameter,
    ``denom = (exp_avg_sq.sqrt() / c).add_(eps)``: two temporaries, and ``denom`` lives on until
    the next parameter's replaces it."""
    if optimizer not in ("adam", "adamw"):
        return
    prev = None
    for nbytes in params:
        root = sim.alloc(nbytes)
        sim.mark("optimizer.step")
        denom = sim.alloc(nbytes)
        sim.mark("optimizer.step")
        sim.dec(root)
        if prev is not None:
            sim.dec(prev)
        prev = denom
    if prev is not None:
        sim.dec(prev)
