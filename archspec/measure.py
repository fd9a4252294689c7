"""Memory as torch measures it: the oracle for archspec/memory.py (needs torch).

Three instruments, each on a real module (the generated one, in the tests):

* saved bytes (``train_step``): the bytes autograd keeps for backward over a forward and the loss,
  from ``torch.autograd.graph.saved_tensors_hooks``, each storage counted once; parameters and
  buffers (alive anyway) are left out, the input and the labels are not.
* ``StorageTracker``: a ``TorchDispatchMode`` that sees every tensor an op returns and follows its
  storage with a weak reference; after each op it adds up the storages still alive. Its peak is
  the peak of live tensor bytes at op boundaries. A dispatch mode changes one thing it measures:
  while one is active autograd never accumulates gradients in place (``isTensorSubclassLike`` is
  true for every tensor), so it reads what ``memory.measure(..., inplace_accumulation=False)``
  computes.
* ``profiled_peak``: the same peak from ``torch.profiler``'s allocation events, with no dispatch
  mode in the way: allocations freed inside the op that made them (kernel workspaces) are left out,
  the rest is tensor storage. It checks ``inplace_accumulation=True``, torch's own behaviour.
"""
from __future__ import annotations

import contextlib

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
    """Peak bytes of live tensor storages at op boundaries (a TorchDispatchMode).

    Live bytes only rise when an op returns a new storage, and never above what was live at the
    last count plus what has been returned since; the storages are counted again only when that
    bound passes the peak, which keeps the count exact and the mode cheap.
    """

    def __new__(cls, baseline=()):
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

            def _add(self, t) -> None:
                s = t.untyped_storage()
                if s._cdata not in self.refs:
                    ref = StorageWeakRef(s)
                    self.refs[s._cdata] = (ref, ref.cdata, s.nbytes())
                    self.added += s.nbytes()

            def _count(self) -> None:
                dead = [key for key, (_, handle, _) in self.refs.items() if expired(handle)]
                for key in dead:
                    del self.refs[key]
                self.counted = sum(n for _, _, n in self.refs.values())
                self.added = 0
                self.peak = max(self.peak, self.counted)

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        self._add(t)
                if self.counted + self.added > self.peak:
                    self._count()
                return out

        return _Tracker()


def _state_tensors(opt) -> list:
    import torch

    return [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def eval_peak(model, x) -> int:
    """Peak live bytes of ``model.eval()(x)`` under ``torch.no_grad()``: parameters, buffers and
    the input included."""
    import torch

    model.eval()
    tracker = StorageTracker([*model.parameters(), *model.buffers(), x])
    with torch.no_grad(), tracker:
        out = model(x)
    del out
    return tracker.peak


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


def train_step(model, x, target, loss_fn, optimizer: str) -> dict:
    """A steady-state training step, ``loss_fn(model(x), target).backward(); opt.step()``, under a
    StorageTracker (so gradients accumulate out of place) and saved_tensors_hooks:
    ``{"peak": live bytes at the worst op boundary, "saved": bytes autograd kept}``."""
    import torch

    opt = _prepared_step(model, x, target, loss_fn, optimizer)
    own = {_key(t) for t in (*model.parameters(), *model.buffers())}
    saved: dict = {}

    def pack(t):
        if _key(t) not in own:
            saved[_key(t)] = t.untyped_storage().nbytes()
        return t

    tracker = StorageTracker([*model.parameters(), *model.buffers(), *_state_tensors(opt), x, target])
    with tracker:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model(x), target)
        loss.backward()
        del loss
        opt.step()
    opt.zero_grad(set_to_none=True)
    return {"peak": tracker.peak, "saved": sum(saved.values())}


def profiled_peak(model, x, target, loss_fn, optimizer: str) -> int:
    """The same step's peak from the profiler's allocations (no dispatch mode), plus the baseline."""
    import torch
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    opt = _prepared_step(model, x, target, loss_fn, optimizer)
    base = {_key(t): t.untyped_storage().nbytes()
            for t in (*model.parameters(), *model.buffers(), *_state_tensors(opt), x, target)}
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss_fn(model(x), target).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    allocs = []  # (time, bytes, ptr, end of the outermost aten op that made it)

    def walk(ev, op_end):
        if ev.tag == _EventType.Allocation:
            f = ev.extra_fields
            allocs.append((ev.start_time_ns, f.alloc_size, f.ptr, op_end))
            return
        if op_end is None and ev.tag == _EventType.TorchOp and ev.name.startswith("aten::"):
            op_end = ev.end_time_ns  # the outermost aten op: what a dispatch mode sees as one call
        for child in ev.children:
            walk(child, op_end)

    with contextlib.suppress(AttributeError):
        for root in prof.profiler.kineto_results.experimental_event_tree():
            walk(root, None)
    allocs.sort()
    born: dict = {}  # ptr -> (bytes, end of its op, time)
    transient = set()
    for t, nbytes, ptr, op_end in allocs:
        if nbytes > 0:
            born[ptr] = (nbytes, op_end, t)
            if op_end is None:
                transient.add((ptr, t))
        elif ptr in born:
            _, end, start = born.pop(ptr)
            if end is None or t <= end:  # a workspace, or a Python scalar wrapped outside any op
                transient.add((ptr, start))
    live = peak = 0
    counted: dict = {}  # ptr -> bytes of a live, counted block
    for t, nbytes, ptr, _ in allocs:
        if nbytes > 0:
            if (ptr, t) not in transient:
                counted[ptr] = nbytes
                live += nbytes
                peak = max(peak, live)
        elif ptr in counted:
            live -= counted.pop(ptr)
    return sum(base.values()) + peak
