"""Memory as torch measures it: the oracle for archspec/memory.py (needs torch).

Three instruments, each on a real module (the generated one, in the tests):

* saved bytes (``train_step``): the bytes autograd keeps for backward over a forward and the loss,
  from ``torch.autograd.graph.saved_tensors_hooks``, each storage counted once; parameters and
  buffers (alive anyway) are left out, the input and the labels are not.
* ``StorageTracker``: a ``TorchDispatchMode`` that sees every tensor an op returns and follows its
  storage with a weak reference; after each op it adds up the storages still alive. Its peak is
  the peak of live tensor bytes at op boundaries. A dispatch mode changes one thing it measures:
  while one is active autograd never accumulates gradients in place (``isTensorSubclassLike`` is
  true for every tensor), and composite ops that test for tensor subclasses take their out-of-place
  paths (at::linear adds its bias out of place), so it reads what
  ``memory.measure(..., dispatch_mode=True)`` computes.
* ``profiled_peak`` and ``profiled_eval_peak``: the same peaks from ``torch.profiler``'s
  allocation events, with no dispatch mode in the way: allocations freed inside the op that made
  them (kernel workspaces) are left out, the rest is tensor storage. They check
  ``memory.measure(...)`` as ``check`` reports it, torch's own behaviour.
"""
from __future__ import annotations

import contextlib
import functools

OPTIMIZERS = {
    "sgd": lambda torch, p: torch.optim.SGD(p, lr=0.01),
    "sgd-momentum": lambda torch, p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    "adam": lambda torch, p: torch.optim.Adam(p, lr=1e-3),
    "adamw": lambda torch, p: torch.optim.AdamW(p, lr=1e-3),
}


def _key(t) -> int:
    return t.untyped_storage()._cdata


def _dispatch_mode():
    from torch.utils._python_dispatch import TorchDispatchMode

    return TorchDispatchMode


class StorageTracker:
    """Peak bytes of live tensor storages at op boundaries (a TorchDispatchMode). With a
    ``timeline`` list, the live bytes after every op that returns a new storage are appended to it.

    Live bytes only rise when an op returns a new storage, and never above what was live at the
    last count plus what has been returned since; the storages are counted again only when that
    bound passes the peak, which keeps the count exact and the mode cheap.
    """

    def __new__(cls, baseline=(), timeline: list | None = None):
        from torch.multiprocessing.reductions import StorageWeakRef
        from torch.utils._pytree import tree_leaves

        import torch

        expired = torch.UntypedStorage._expired

        class _Tracker(_dispatch_mode()):
            def __init__(self):
                super().__init__()
                self.refs: dict = {}  # storage -> (weak reference, its weak handle, bytes)
                self.counted = 0  # live bytes at the last count
                self.added = 0  # bytes of storages returned since
                self.peak = 0
                for t in baseline:
                    self._add(t)
                self._count()

            def _add(self, t) -> bool:
                """Follow a storage; True when it is new (a dead one's address may be reused)."""
                s = t.untyped_storage()
                known = self.refs.get(s._cdata)
                if known is None or expired(known[1]):
                    ref = StorageWeakRef(s)
                    self.refs[s._cdata] = (ref, ref.cdata, s.nbytes())
                    self.added += s.nbytes()
                    return s.nbytes() > 0
                return False

            def _count(self) -> None:
                dead = [key for key, (_, handle, _) in self.refs.items() if expired(handle)]
                for key in dead:
                    del self.refs[key]
                self.counted = sum(n for _, _, n in self.refs.values())
                self.added = 0
                self.peak = max(self.peak, self.counted)

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                new = False
                for t in tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        new = self._add(t) or new
                if timeline is not None and new:
                    self._count()
                    timeline.append((self.counted, str(func)))
                elif self.counted + self.added > self.peak:
                    self._count()
                return out

        return _Tracker()


def _state_tensors(opt) -> list:
    import torch

    return [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def eval_peak(model, x, timeline: list | None = None) -> int:
    """Peak live bytes of ``model.eval()(x)`` under ``torch.no_grad()``: parameters, buffers and
    the input included. ``timeline``: see :func:`_rebased`."""
    import torch

    model.eval()
    own = [*model.parameters(), *model.buffers()]
    raw = [] if timeline is not None else None
    tracker = StorageTracker([*own, x], raw)
    with torch.no_grad(), tracker:
        out = model(x)
    del out
    _rebased(timeline, raw, own)
    return tracker.peak


def _rebased(timeline: list | None, raw: list | None, own: list, inputs=()) -> None:
    """A timeline as ``memory.timeline`` counts it: (bytes, op) after every op that allocates,
    the bytes being what the run holds beyond the model's parameters, buffers and optimizer state
    (``own``): its input and labels (``inputs``, for the profiler, which does not see them) and
    every tensor made since."""
    if timeline is not None:
        shift = sum(t.untyped_storage().nbytes() for t in inputs) - sum(t.untyped_storage().nbytes() for t in own)
        timeline.extend((v + shift, op) for v, op in raw)


def _prepared_step(model, x, target, loss_fn, optimizer: str):
    """The model in training with its optimizer, gradients None; a stateful optimizer has taken
    one step, so that its state exists (the steady state)."""
    import torch

    model.train()
    opt = OPTIMIZERS[optimizer](torch, model.parameters())
    if optimizer != "sgd":
        loss_fn(model(x), target).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return opt


def train_step(model, x, target, loss_fn, optimizer: str, timeline: list | None = None) -> dict:
    """A steady-state training step, ``loss_fn(model(x), target).backward(); opt.step()``, under a
    StorageTracker (so gradients accumulate out of place) and saved_tensors_hooks:
    ``{"peak": live bytes at the worst op boundary, "saved": bytes autograd kept}``. ``timeline``:
    see :func:`_rebased`."""
    import torch

    opt = _prepared_step(model, x, target, loss_fn, optimizer)
    own = {_key(t) for t in (*model.parameters(), *model.buffers())}
    saved: dict = {}

    def pack(t):
        if _key(t) not in own:
            saved[_key(t)] = t.untyped_storage().nbytes()
        return t

    state = [*model.parameters(), *model.buffers(), *_state_tensors(opt)]
    raw = [] if timeline is not None else None
    tracker = StorageTracker([*state, x, target], raw)
    with tracker:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model(x), target)
        loss.backward()
        del loss
        opt.step()
    opt.zero_grad(set_to_none=True)
    _rebased(timeline, raw, state)
    return {"peak": tracker.peak, "saved": sum(saved.values())}


def profiled_peak(model, x, target, loss_fn, optimizer: str, timeline: list | None = None) -> int:
    """The same step's peak from the profiler's allocations (no dispatch mode), plus the baseline.
    ``timeline``: see :func:`_rebased`."""
    opt = _prepared_step(model, x, target, loss_fn, optimizer)
    base = (*model.parameters(), *model.buffers(), *_state_tensors(opt), x, target)

    def step():
        loss_fn(model(x), target).backward()
        opt.step()
    raw = [] if timeline is not None else None
    peak = _profiled(step, base, raw)
    opt.zero_grad(set_to_none=True)
    _rebased(timeline, raw, (), (x, target))
    return peak


def profiled_eval_peak(model, x, timeline: list | None = None) -> int:
    """``eval_peak`` from the profiler's allocations (no dispatch mode)."""
    import torch

    model.eval()

    def forward():
        with torch.no_grad():
            model(x)
    raw = [] if timeline is not None else None
    peak = _profiled(forward, (*model.parameters(), *model.buffers(), x), raw)
    _rebased(timeline, raw, (), (x,))
    return peak


@functools.lru_cache(maxsize=None)
def _decomposed(name: str) -> bool:
    """Whether an aten op decomposes before a dispatch mode sees it (CompositeImplicitAutograd with
    no CPU kernel of its own, in every overload but the out= ones: layer_norm, max_pool2d, linear):
    what its parts allocate is theirs, so a result one part returns and the op drops (layer_norm's
    mean in eval) is a tensor, not a workspace."""
    import torch

    def implicit(overload: str):  # None: a TorchScript-only overload, not in the dispatcher
        has = torch._C._dispatch_has_kernel_for_dispatch_key
        try:
            return has(overload, "CompositeImplicitAutograd") and not has(overload, "CPU")
        except RuntimeError:
            return None

    found = [implicit(f"{name}.{s.overload_name}".rstrip(".")) for s in torch._C._jit_get_schemas_for_operator(name)
             if not (s.overload_name == "out" or s.overload_name.endswith("_out"))]
    found = [f for f in found if f is not None]
    return bool(found) and all(found)


def _profiled(fn, baseline, timeline: list | None = None) -> int:
    """Peak live bytes of the tensors ``fn`` allocates, from the profiler's allocation events (each
    block freed inside the op that made it, as a dispatch mode sees ops, left out), plus the
    baseline tensors. With a ``timeline`` list, (bytes ``fn`` holds, op) after each op that
    allocates are appended to it."""
    from torch.profiler import ProfilerActivity, profile

    base = {_key(t): t.untyped_storage().nbytes() for t in baseline}
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocs = _allocations(prof)
    transient = _transients(allocs)
    live = peak = 0
    counted: dict = {}  # ptr -> bytes of a live, counted block
    last = None
    for t, nbytes, ptr, op in allocs:
        if nbytes > 0:
            if (ptr, t) not in transient:
                counted[ptr] = nbytes
                live += nbytes
                peak = max(peak, live)
                if timeline is not None:  # one point per op: after its last allocation
                    if timeline and last == op:
                        timeline.pop()
                    timeline.append((live, op[1]))
                    last = op
        elif ptr in counted:
            live -= counted.pop(ptr)
    return sum(base.values()) + peak


def _allocations(prof) -> list:
    """(time, bytes, address, op) of every allocation (bytes > 0) and free (bytes < 0), in time
    order; op is (end time, name) of the outermost aten op a dispatch mode sees as one call that
    made it, or None."""
    from torch._C._profiler import _EventType

    allocs = []

    def walk(ev, op):
        if ev.tag == _EventType.Allocation:
            f = ev.extra_fields
            allocs.append((ev.start_time_ns, f.alloc_size, f.ptr, op))
            return
        if op is None and ev.tag == _EventType.TorchOp and ev.name.startswith("aten::") and \
                not _decomposed(ev.name):
            op = (ev.end_time_ns, ev.name)
        for child in ev.children:
            walk(child, op)

    with contextlib.suppress(AttributeError):
        for root in prof.profiler.kineto_results.experimental_event_tree():
            walk(root, None)
    allocs.sort(key=lambda a: a[:3])
    return allocs


def _transients(allocs: list) -> set:
    """(address, time) of the blocks freed inside the op that made them: a kernel's workspace, or
    a Python scalar wrapped outside any op."""
    born: dict = {}  # ptr -> (end of its op, time)
    transient = set()
    for t, nbytes, ptr, op in allocs:
        if nbytes > 0:
            born[ptr] = (op and op[0], t)
            if op is None:
                transient.add((ptr, t))
        elif ptr in born:
            end, start = born.pop(ptr)
            if end is None or t <= end:
                transient.add((ptr, start))
    return transient
