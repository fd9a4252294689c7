"""A PyTorch model -> ``ir.Traced`` (needs torch): every module's forward traced with torch.fx.

Each module is traced on its own, its submodules kept as leaves, so that what it computes is
read in terms of its own children: the graph of a block is the block's body. A catalog op module
(nn.Conv2d, nn.BatchNorm2d, ...) is a leaf and not traced; a plain nn.Sequential is its entries.
Every module is traced in training mode (functional dropout is active there, aux heads run) and
in eval mode: a module whose graph differs between the two (beyond the root's aux heads) is
refused. The root's training outputs give the aux heads and the outputs namedtuple.
"""
from __future__ import annotations

import inspect
import os
import re
import sys
from collections import Counter

from ..errors import Loc
from ..ops import OPS
from ..validate import ENTRY_NAME, RESERVED
from . import catalog
from .catalog import Refused, Step
from .ir import AuxHead, Fn, GNode, Mod, NotExpressible, Param, Problem, Traced, Use, decompose


_META = object()  # a size read from a tensor (x.size(0)), not a tensor
_BATCH = object()  # the batch size: x.size(0), x.shape[0]
_SIZES = object()  # x.size(), x.shape


def trace_model(model, records: dict | None = None, partial: bool = False, input_shape=(3, 224, 224)) -> Traced:
    """Trace ``model`` (its constructor arguments in ``records``: id(module) -> (args, defaults))."""
    modes = {m: m.training for m in model.modules()}
    try:
        t = _Importer(model, records or {}, partial)
        try:
            root, aux, outputs = t.root()
        except _Failed as exc:  # the model as a whole: nothing to write but the reason
            root, aux, outputs = Mod("", _qualname(type(model)), type(model).__name__, "unsupported",
                                     problem=exc.problem), [], None
    finally:
        for m, mode in modes.items():
            m.training = mode
    from .totals import measure

    inputs: dict = {}
    totals = measure(model, input_shape, [getattr(model, a.name) for a in aux], inputs) if root.kind != "unsupported" else {}
    for key, mod in t.done.items():
        mod.in_channels = inputs.get(key)
    out = totals.get("output", ())
    return Traced(root, aux, outputs, [(k, tuple(v.shape)) for k, v in model.state_dict().items()], totals,
                  out[0] if len(out) == 1 else 1000, t.problems, tuple(input_shape))


def _torch_dirs() -> tuple:
    import torch

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (os.path.dirname(os.path.abspath(torch.__file__)) + os.sep, here + os.sep)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def user_frame(tb) -> Loc | None:
    """The innermost traceback frame in the user's code (outside torch and archspec)."""
    skip = _torch_dirs()
    where = None
    while tb is not None:
        f = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not f.startswith(skip) and not f.startswith("<"):
            where = _loc(f, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _loc(file: str, line: int) -> Loc:
    import linecache

    text = linecache.getline(file, line)
    return Loc(file, line, len(text) - len(text.lstrip()) + 1 if text.strip() else 1)


_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def node_where(node) -> Loc | None:
    """Where in the user's source an fx node was recorded (its stack trace)."""
    skip = _torch_dirs()
    for file, line in _FRAME.findall(getattr(node, "stack_trace", None) or ""):
        file = os.path.abspath(file)
        if not file.startswith(skip):
            return _loc(file, int(line))
    return None


def _attr_where(model, path: str) -> Loc | None:
    """Where the parent's __init__ assigns the module at ``path`` (``self.spare = ...``), if found."""
    parent, _, name = path.rpartition(".")
    try:
        init = type(model.get_submodule(parent)).__init__
        lines, first = inspect.getsourcelines(init)
        file = inspect.getsourcefile(init)
    except (AttributeError, TypeError, OSError):
        return None
    for i, line in enumerate(lines):
        if re.search(rf"\bself\.{re.escape(name)}\s*=", line) and name:
            return _loc(os.path.abspath(file), first + i)
    return None


def _is_sequential(m) -> bool:
    import torch.nn as nn

    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def _has_state(m) -> bool:
    return any(True for _ in m.state_dict().keys())


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _qualname(cls) -> str:
    """torchvision.models.googlenet.Inception; a class of a file imported by path: file.Name."""
    module = sys.modules.get(cls.__module__)
    if cls.__module__.startswith("_") and getattr(module, "__file__", None):
        return f"{os.path.splitext(os.path.basename(module.__file__))[0]}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _name_problem(name: str) -> str | None:
    if not name.isidentifier() or name.startswith("__"):
        return f"the module name '{name}' is not an identifier a spec can write"
    if name in RESERVED:
        return f"the module name '{name}' is a reserved word of the spec language"
    return None


def _entry_problem(name: str) -> str | None:
    """Why a named nn.Sequential entry's name cannot be written (None: it can)."""
    if not ENTRY_NAME.match(name):
        return f"the module name '{name}' is not letters, digits, _ and -, as a named nn.Sequential entry's must be"
    return _name_problem(name) if name.isidentifier() or name.startswith("__") else None


def _wrapped() -> tuple:
    """The Python functions fx should keep whole (catalog.WRAPPED), of modules already imported."""
    out = []
    for key in catalog.WRAPPED:
        module, _, name = key.rpartition(".")
        fn = getattr(sys.modules.get(module), name, None)
        if fn is not None:
            out.append(fn)
    return tuple(out)


class _Tracer:
    """torch.fx's Tracer with every submodule of the traced module a leaf."""

    @staticmethod
    def trace(m, training: bool, locate: bool):
        import torch.fx as fx

        class Tracer(fx.Tracer):
            def is_leaf_module(self, mod, qualified_name):
                return mod is not m

        tracer = Tracer(autowrap_functions=_wrapped())
        tracer.record_stack_traces = locate  # where each call is in the source: a third of the time, for errors
        m.train(training)
        return tracer.trace(m, concrete_args=_concrete_args(m))


def _concrete_args(m) -> dict | None:
    params = list(inspect.signature(m.forward).parameters.values())
    extra = {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return extra or None


def _signature(graph, skip=()) -> list:
    return [(n.op, str(n.target)) for n in graph.nodes if n.op not in ("placeholder", "output") and n not in skip]


def _trace_reason(exc) -> str:
    text = _first_line(exc)
    if "symbolically traced variables cannot be used as inputs to control flow" in text:
        return "data-dependent control flow (a Python if, loop or assert on a tensor's value or shape)"
    if "cannot be iterated" in text:
        return "iterates over a tensor (its values or its shape)"
    return f"tracing with torch.fx failed: {type(exc).__name__}: {text}"


class _Importer:
    def __init__(self, model, records: dict, partial: bool):
        self.model = model
        self.records = records
        self.partial = partial
        self.problems: list = []
        self.done: dict = {}  # id(module) -> Mod
        self.given_list: set = set()  # id(module) of modules their parent passes a list of tensors

    # -- problems --

    def refuse(self, path: str, reason: str, where: Loc | None = None) -> Problem:
        try:
            owner = type(self.model.get_submodule(path)).__name__
        except AttributeError:  # a module the import made (a functional dropout's)
            owner = ""
        p = Problem(path, reason, where or _attr_where(self.model, path), owner)
        self.problems.append(p)
        return p

    def unsupported(self, m, path: str, reason: str, where: Loc | None = None) -> Mod:
        return Mod(path, _qualname(type(m)), type(m).__name__, "unsupported", problem=self.refuse(path, reason, where))

    # -- modules --

    def convert(self, m, path: str, sequential: bool = False) -> Mod:
        """The Mod of one module instance (each converted once); ``sequential``: an nn.ModuleList
        its parent calls in a chain, read as an nn.Sequential."""
        if id(m) in self.done:
            return self.done[id(m)]
        mod = self.sequential(m, path) if sequential else self._convert(m, path)
        args, defaults = self.records.get(id(m), ({}, {}))
        mod.ctor, mod.defaults = dict(args), dict(defaults)
        self.done[id(m)] = mod
        return mod

    def _convert(self, m, path: str) -> Mod:
        cls = type(m)
        try:
            op = catalog.module_op(m)
            after = catalog.module_after(m) if op is not None else []
        except Refused as exc:
            return self.unsupported(m, path, str(exc))
        if op is not None:
            return Mod(path, _qualname(cls), cls.__name__, "op", op=op, after=after)
        if _is_sequential(m):
            return self.sequential(m, path)
        try:
            body = self.block(m, path)
        except NotExpressible as exc:
            return self.unsupported(m, path, f"{exc.reason} ({exc.node.name})", exc.node.where)
        except _Failed as exc:
            return Mod(path, _qualname(cls), cls.__name__, "unsupported", problem=exc.problem)
        return Mod(path, _qualname(cls), cls.__name__, "block", body=body)

    def sequential(self, m, path: str) -> Mod:
        cls = type(m)
        names = [n for n, c in m.named_children()]
        # named entries (an OrderedDict) with a name that is no identifier (RegNet's block1-0): a
        # Sequential of named entries, the one place a spec may write such a name
        keyed = names != [str(i) for i in range(len(names))] and any(_name_problem(n) for n in names)
        if keyed or names == [str(i) for i in range(len(names))]:
            for n in names if keyed else ():
                problem = _entry_problem(n)
                if problem:
                    return self.unsupported(m, _join(path, n), problem)
            entries = [self.convert(c, _join(path, n)) for n, c in m.named_children()]
            for e in entries:
                if e.after:
                    return self.unsupported(m, e.path, f"a {e.short} applies its activation itself, which an "
                                                       "nn.Sequential entry of a spec cannot")
            return Mod(path, _qualname(cls), cls.__name__, "seq", entries=entries, names=tuple(names) if keyed else None)
        for n in names:  # named entries that are identifiers: a chain of named items, a block
            problem = _name_problem(n)
            if problem:
                return self.unsupported(m, _join(path, n), problem)
        body = [Use(n, self.convert(c, _join(path, n))) for n, c in m.named_children()]
        return Mod(path, _qualname(cls), cls.__name__, "block", body=body)

    def trace(self, m, path: str, locate: bool = False):
        """(training graph, eval graph) of one module; raises _Failed."""
        graphs = []
        for training in (True, False):
            try:
                graphs.append(_Tracer.trace(m, training, locate))
            except Exception as exc:  # the user's forward, run symbolically: anything can fail
                raise _Failed(self.refuse(path, _trace_reason(exc), user_frame(exc.__traceback__))) from None
        return graphs

    def block(self, m, path: str) -> list:
        """The body of a module; traced again with source locations when something is refused."""
        try:
            return self._block(m, path, False)
        except _Locate:
            return self._block(m, path, True)

    def _block(self, m, path: str, locate: bool) -> list:
        train, evaluated = self.trace(m, path, locate)
        if _signature(train) != _signature(evaluated):
            raise _Failed(self.refuse(path, "its forward computes different things in training and in eval"))
        out = [n for n in train.nodes if n.op == "output"][0].args[0]
        return _Graph(self, m, path, train, locate=locate).items(out)

    # -- the root: the main network, its aux heads, its training outputs --

    def root(self):
        try:
            return self._root(False)
        except _Locate:
            return self._root(True)

    def _root(self, locate: bool):
        m = self.model
        train, evaluated = self.trace(m, "", locate)
        split = _split_outputs(train, evaluated)
        if split is None:
            raise _Failed(self.refuse("", "its forward in eval does not return one tensor, or returns in training "
                                          "nothing that is that tensor"))
        main, heads, builder, layout = split
        skip = set(heads) | ({builder} if builder is not None else set())
        if _signature(train, skip) != _signature(evaluated):
            raise _Failed(self.refuse("", "its forward computes different things in training and in eval (beyond "
                                          "auxiliary heads whose outputs it returns in training)"))
        graph = _Graph(self, m, "", train, skip, {h.target for h in heads if h.op == "call_module"}, locate)
        try:
            body = graph.items(main)
        except NotExpressible as exc:
            raise _Failed(self.refuse("", f"{exc.reason} ({exc.node.name})", exc.node.where)) from None
        names = [n for n, _ in m.named_children()]
        heads.sort(key=lambda h: names.index(h.target) if h.op == "call_module" and h.target in names else len(names))
        aux = [self.aux_head(h, graph) for h in heads]  # in the order they are registered
        root = Mod("", _qualname(type(m)), type(m).__name__, "block", body=body)
        root.ctor, root.defaults = (dict(d) for d in self.records.get(id(m), ({}, {})))
        named = {id(h): a.name for h, a in zip(heads, aux) if a is not None}
        return root, [a for a in aux if a is not None], _layout(*layout, main, named)

    def aux_head(self, h, graph) -> AuxHead | None:
        """An output of training only: a submodule called on a top-level layer's output."""
        src = h.args[0] if h.op == "call_module" and len(h.args) == 1 else None
        if src is None or not _is_node(src) or src.op != "call_module" or "." in h.target or "." in src.target:
            self.refuse("", f"the training output '{h.name}' is not a submodule applied to a top-level layer's "
                            "output (an aux head)", node_where(h))
            return None
        names = [n for n, _ in self.model.named_children()]
        before = [n for n in names[:names.index(h.target)] if graph.calls.get(n) == 1]
        if not before:
            self.refuse(h.target, "an aux head registered before every top-level layer", node_where(h))
            return None
        mod = self.convert(self.model.get_submodule(h.target), h.target)
        return AuxHead(h.target, mod, src.target, before[-1])


class _Locate(Exception):
    """Something is refused: trace the module again, recording where each call is."""


class _Failed(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.reason)
        self.problem = problem


class _Graph(catalog.Context):
    """One module's fx graph -> GNodes (children converted on the way) -> its body."""

    def __init__(self, imp: _Importer, m, path: str, graph, skip=(), elsewhere=(), locate: bool = False):
        self.imp, self.m, self.path, self.graph = imp, m, path, graph
        self.skip = set(skip)
        self.values: dict = {}  # fx node -> GNode, a size marker or ("param", name)
        self.nodes: list = []
        self.calls = Counter(n.target for n in graph.nodes if n.op == "call_module" and n not in self.skip)
        self.elsewhere = set(elsewhere)  # children called outside this graph (the root's aux heads)
        self.taken = {n for n, _ in m.named_children()} | {n for n, _ in m.named_parameters(recurse=False)}
        self.params_used: set = set()
        self.chained: set = set()  # fx nodes of ModuleList modules read as one nn.Sequential
        self.failed: Problem | None = None
        self.locate = locate  # the graph records where each call is (else a refusal retraces)
        self.lists: dict = {}  # tuple of fx nodes -> the GNode of their concatenation (DenseNet)
        self.given_list = id(m) in imp.given_list  # its parent passes it a list of tensors

    def items(self, out) -> list:
        for n in self.graph.nodes:
            if n not in self.skip and n.op != "output":
                try:
                    self.node(n)
                except Refused as exc:
                    self.refused(n, str(exc))
        if not isinstance(self.values.get(out), GNode):
            raise _Failed(self.imp.refuse(self.path, "its forward does not return one tensor"))
        try:
            items = decompose(self.nodes, self.values[out])
        except NotExpressible:
            if not self.locate:
                raise _Locate() from None
            raise
        self.check_unused()
        if self.failed is not None and not self.imp.partial:
            raise _Failed(self.failed)
        return items

    def refused(self, n, reason: str) -> None:
        """Record a problem; the value passes through an item marked unsupported (--partial)."""
        if not self.locate:
            raise _Locate()
        problem = self.imp.refuse(self.path, reason, node_where(n))
        self.failed = self.failed or problem
        inputs = [a for a in n.all_input_nodes if isinstance(self.values.get(a), GNode)]
        if inputs:
            self.add(n, GNode(n.name, "item", [self.values[inputs[0]]], items=[Fn(None, problem)]))

    def add(self, n, g: GNode) -> None:
        g.where = g.where or node_where(n)
        self.values[n] = g
        self.nodes.append(g)

    # -- catalog.Context --

    def kind(self, arg) -> str:
        v = self.values.get(arg) if _is_node(arg) else None
        if isinstance(v, GNode):
            return "chunk" if v.kind == "chunk" else "tensor"
        if isinstance(v, tuple):
            return "param"
        return "meta" if v in (_META, _BATCH, _SIZES) and v is not None else "const"

    def listed(self, arg) -> bool:
        """Whether ``torch.cat(arg, 1)`` is known as one tensor, and make it so. A list of tensors
        that the module was given (the input; ``given_list``) is their concatenation, which the
        spec passes in, where the list is used by that cat only. A list of this module's tensors
        is its first alone, or the concatenation of the list without its last (known) and the last:
        DenseNet's ``features``, a layer's output appended each time, is ``x = cat([x, layer(x)])``
        over and over (concatenation is associative), which a spec writes as ``concat: [[], ...]``."""
        if _is_node(arg):
            return self.given_list and arg.op == "placeholder" and len(arg.users) == 1
        if not isinstance(arg, (list, tuple)) or not arg or not all(_is_node(a) for a in arg):
            return False
        key = tuple(arg)
        if key in self.lists:
            return True
        if len(key) == 1 and self.kind(key[0]) == "tensor":
            self.lists[key] = self.tensor(key[0])
        elif key[:-1] in self.lists and self.kind(key[-1]) == "tensor":
            g = GNode(f"{key[-1].name}_cat", "merge", [self.lists[key[:-1]], self.tensor(key[-1])], merge="concat")
            g.where = self.values[key[-1]].where
            self.nodes.append(g)
            self.lists[key] = g
        return key in self.lists

    def is_batch(self, arg) -> bool:
        return _is_node(arg) and self.values.get(arg) is _BATCH

    def tensor(self, arg) -> GNode:
        v = self.values.get(arg) if _is_node(arg) else None
        if isinstance(v, GNode) and v.kind != "chunk":
            return v
        if isinstance(arg, (list, tuple)):
            raise Refused("passes a list of tensors where a spec passes one tensor (a module or op reads one input)")
        if isinstance(v, GNode):
            raise Refused("applies an op to the tuple of chunks of a split, not to one chunk")
        raise Refused("applies an op to something that is not a tensor computed in this module")

    # -- nodes --

    def on_sizes(self, n) -> bool:
        """A call that reads sizes and no tensor: it computes no value of the network."""
        if getattr(n.target, "__name__", None) == "getitem":  # x.size()[0] is the batch size: _size_marker
            return False
        kinds = [self.kind(a) for a in n.all_input_nodes]
        return bool(kinds) and all(k == "meta" for k in kinds)

    def node(self, n) -> None:
        if n.op == "placeholder":
            if self.nodes:
                raise Refused("its forward takes more than one tensor")
            if self.given_list and not _cat_only(n):  # the whole forward reads something else: one problem
                raise _Failed(self.imp.refuse(self.path, "is given a list of tensors and uses it other than by "
                                                         "torch.cat(list, 1)", node_where(n)))
            self.add(n, GNode(n.name, "input", []))
        elif n.op == "get_attr":
            self.values[n] = ("param", n.target)
        elif n.op == "call_module":
            self.module_call(n)
        elif self.on_sizes(n):  # arithmetic or an assert on sizes (x.size(1) // 2, torch._assert(x.dim() == 4))
            self.values[n] = _META
        else:
            kind = "function" if n.op == "call_function" else "method"
            self.apply(n, catalog.call_step(kind, n.target, n.args, n.kwargs, self))

    def apply(self, n, step: Step) -> None:
        if step.kind == "op":
            x = self.tensor(step.tensor)
            self.add(n, GNode(n.name, "item", [x], items=[self.fn_item(op, n) for op in step.ops]))
        elif step.kind == "pass":
            self.values[n] = self.tensor(step.tensor)
        elif step.kind == "merge":
            self.add(n, GNode(n.name, "merge", [self.tensor(i) for i in step.inputs], merge=step.merge))
        elif step.kind == "chunk":
            self.add(n, GNode(n.name, "chunk", [self.tensor(step.tensor)], split=step.split))
        elif step.kind == "piece":
            self.add(n, GNode(n.name, "piece", [self.values[step.tensor]], index=step.index))
        elif step.kind == "listed":
            self.values[n] = self.lists[tuple(step.tensor)] if not _is_node(step.tensor) else self.tensor(step.tensor)
        elif step.kind == "param":
            self.add(n, GNode(n.name, "item", [self.tensor(step.tensor)], items=[self.param(step.name, step.merge)]))
        else:
            self.values[n] = _size_marker(n, self.values)

    def fn_item(self, op, n):
        """An anonymous op; one that exists only as a module (dropout) gets a module of its own,
        which holds no state and so changes no state_dict key."""
        if OPS[op.op].function is not None:
            return Fn(op)
        name = _fresh(op.op, self.taken)
        self.taken.add(name)
        return Use(name, Mod(_join(self.path, name), "", op.op, "op", op=op))

    def param(self, node, apply: str) -> Param:
        name = self.values[node][1]
        if "." in name or name in self.params_used:
            raise Refused(f"the parameter '{name}' is not a tensor of this module used once")
        self.params_used.add(name)
        t = getattr(self.m, name)
        flat = t.detach().reshape(-1)
        if t.is_meta or not flat.numel():  # no values to read: the initial value is a placeholder
            init = 1.0
        else:
            init = float(flat[0]) if bool((flat == flat[0]).all()) else float(flat.float().mean())
        return Param(name, catalog.call("parameter", shape=tuple(t.shape), init=init, apply=apply))

    def module_call(self, n) -> None:
        target = n.target
        if n in self.chained:
            return  # a later module of a ModuleList called in a chain: the Sequential holds it
        if "." in target:
            self.module_list(n)
            return
        problem = _name_problem(target)
        if problem:
            raise Refused(problem)
        child = self.m.get_submodule(target)
        given = n.args[:1] if len(n.args) == 1 and isinstance(n.args[0], (list, tuple)) else ()
        if given and not self.listed(given[0]):
            raise Refused("passes a list of tensors where a spec passes one tensor (a module or op reads one input)")
        if given:  # DenseNet's layer, given the features so far: the spec gives it their concatenation
            self.imp.given_list.add(id(child))
        mod = self.imp.convert(child, _join(self.path, target))
        if mod.kind == "unsupported":  # its own problem is recorded: let the value pass (--partial)
            self.add(n, GNode(n.name, "item", [self.tensor(n.all_input_nodes[0])], items=[Use(target, mod)]))
            return
        if len(n.args) != 1 or n.kwargs:
            raise Refused(f"calls '{target}' with {len(n.args) + len(n.kwargs)} arguments (a spec's modules take one tensor)")
        if given and mod.kind != "block":
            raise Refused(f"passes a list of tensors to '{target}', which is no module with a forward of its own")
        x = self.lists[tuple(given[0])] if given else self.tensor(n.args[0])
        if self.calls[target] == 1:
            item = Use(target, mod)
        elif mod.kind == "op" and not _has_state(child) and OPS[mod.op.op].function is not None:
            item = Fn(mod.op)  # a parameterless module used several times: the function each time
        else:
            raise Refused(f"calls '{target}' {self.calls[target]} times (a spec's modules are used once; shared "
                          "weights cannot be written)")
        self.add(n, GNode(n.name, "item", [x], items=[item]))

    def module_list(self, n) -> None:
        """``for block in self.blocks: x = block(x)`` over an nn.ModuleList: the same modules, keys
        and numbers as an nn.Sequential of them, which is how the spec writes it."""
        import torch.nn as nn

        name, _, index = n.target.partition(".")
        holder = getattr(self.m, name, None)
        chain = [n]
        while len(chain) < len(holder or ()) and len(chain[-1].users) == 1:
            nxt = next(iter(chain[-1].users))
            if nxt.op != "call_module" or nxt.target != f"{name}.{len(chain)}" or list(nxt.args) != [chain[-1]]:
                break
            chain.append(nxt)
        if not isinstance(holder, nn.ModuleList) or index != "0" or len(chain) != len(holder) or n.kwargs \
                or len(n.args) != 1:
            raise Refused(f"calls '{n.target}', a submodule of a submodule, directly (a spec calls its own modules; an "
                          "nn.ModuleList whose modules are called in order, each on the last one's output, is read as "
                          "an nn.Sequential)")
        problem = _name_problem(name)
        if problem:
            raise Refused(problem)
        self.chained.update(chain[1:])
        self.calls[name] = 1
        mod = self.imp.convert(holder, _join(self.path, name), sequential=True)
        self.add(chain[-1], GNode(n.name, "item", [self.tensor(n.args[0])], items=[Use(name, mod)]))

    def check_unused(self) -> None:
        for name, child in self.m.named_children():
            if name not in self.calls and name not in self.elsewhere and _has_state(child):
                self.failed = self.failed or self.imp.refuse(
                    _join(self.path, name), "is never called by its parent's forward: its state_dict keys would be lost")
        for name, _ in list(self.m.named_parameters(recurse=False)) + list(self.m.named_buffers(recurse=False)):
            if name not in self.params_used:
                self.failed = self.failed or self.imp.refuse(
                    _join(self.path, name), "a tensor of its module that is not a parameter applied to the input "
                                            "(x * p or x + p)")


def _cat_only(n) -> bool:
    """Whether fx node ``n`` is read by one ``torch.cat(n, 1)`` and nothing else."""
    (user, *more) = list(n.users) or [None]
    dim = (user.args[1] if len(user.args) > 1 else user.kwargs.get("dim", 0)) if user is not None else None
    return not more and user.op == "call_function" and getattr(user.target, "__name__", "") == "cat" \
        and user.args[:1] == (n,) and dim == 1


def _is_node(arg) -> bool:
    import torch.fx as fx

    return isinstance(arg, fx.Node)


def _size_marker(n, values: dict):
    """x.size(0) and x.shape[0] are the batch size; x.size() and x.shape all sizes; else a size."""
    if n.op == "call_method" and n.target == "size":
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        return _SIZES if dim is None else _BATCH if dim == 0 else _META
    if n.op == "call_function" and getattr(n.target, "__name__", "") == "getattr":
        return _SIZES
    if n.op == "call_function" and getattr(n.target, "__name__", "") == "getitem":
        src = n.args[0]
        return _BATCH if values.get(src) is _SIZES and n.args[1] == 0 else _META
    return _META


def _fresh(base: str, taken: set) -> str:
    name, i = base, 1
    while name in taken or name in RESERVED:
        name, i = f"{base}_{i}", i + 1
    return name


def _outputs(out) -> tuple:
    """(elements, namedtuple type name, its fields, the node that builds it) of what forward returns."""
    if _is_node(out) and out.op == "call_function" and isinstance(out.target, type) and issubclass(out.target, tuple):
        fields = tuple(getattr(out.target, "_fields", ()))
        elements = list(out.args) + [out.kwargs[f] for f in fields[len(out.args):] if f in out.kwargs]
        return elements, out.target.__name__ if fields else None, fields or None, out
    if isinstance(out, (tuple, list)):
        return list(out), None, None, None
    return [out], None, None, None


def _split_outputs(train, evaluated):
    """(the main output, the aux heads' outputs, the node that builds the training outputs,
    (elements, type name, fields)) from the training graph, the main output being what eval
    returns; None when eval returns no tensor that training returns too."""
    out = [n for n in train.nodes if n.op == "output"][0].args[0]
    elements, type_name, fields, builder = _outputs(out)
    eval_out = [n for n in evaluated.nodes if n.op == "output"][0].args[0]
    main = [e for e in elements if _is_node(e) and _is_node(eval_out) and e.name == eval_out.name]
    if len(main) != 1:
        return None
    heads = [e for e in elements if e is not main[0] and e is not None]
    return main[0], heads, builder, (elements, type_name, fields)


def _layout(elements, type_name, fields, main, names: dict):
    """The outputs: field: (type name, [(field, "main" or an aux head)]), None without aux heads;
    ``names``: id(fx node) -> the aux head it is."""
    if not names:
        return None
    pairs = []
    for i, e in enumerate(elements):
        if e is None:
            continue
        source = "main" if e is main else names.get(id(e))
        field = fields[i] if fields else ("logits" if e is main else source)
        if source is not None:
            pairs.append((field, source))
    return type_name, pairs
