"""Differential fuzzing of archspec (issue 10): random valid specs from the whole language, each
compiled, generated, imported and compared with the reference interpreter (and its deploy build).

``cases()`` is a hypothesis strategy that draws a ``Case``: the files of one spec (with its
``use:`` libraries and ``extends:`` parent), valid by construction (the generator tracks every
tensor's shape through the op catalog's own shape rules). It covers every op of the catalog in
each of its forms (named module, functional step, nn.Sequential entry), concat, add and mul merges
(nested, identity branches, single-item, list and Sequential branches, downsampling branches,
squeeze-and-excitation gates, ``split:`` into equal chunks or sizes),
``repeat:``, ``if:``, blocks with arguments of every type (defaults, long form, expressions over
them, blocks inside blocks, reused with other values), model arguments, aux heads (call, block
or Sequential, ``after:``), ``transforms:``, ``extends:`` with ``edit:`` and argument overrides,
and ``use:`` libraries. And the language of issue 11: expressions with functions, comparisons and
choices and a block's input size (``in_channels``, ``in_h``); conditional groups (in bodies and
Sequentials), conditional merge branches, ``if:`` on merges; named repeats (``"m_{idx}"``, counts
that differ between instances of a block) and ``for:`` tables; arguments of type op (a block's
activation, in bodies and Sequentials, given per call); ``use: stock:lib/basic.yaml``. What is
conditional or repeated is shape-neutral, so that any count or condition fits. Every name (model, class, block, argument, module, aux head, file) is a
placeholder drawn, a quarter of the time, from a pool of hostile names: Python builtins and soft
keywords, ``nn.Module`` attributes, the generated file's locals and imports, namedtuple
internals, names archspec reserves. ``Case.render(plain=True)`` gives the same network with plain
names, which tells a name bug from any other.

``check(case, work)`` runs one case and returns an ``Outcome``: ``ok``, ``refused`` (a located
ArchspecError, exit 1), ``unlocated`` (an ArchspecError without a line), ``internal`` (any other
exception inside archspec), ``traceback`` (an exception escaping ``archspec.cli.main``) or
``mismatch`` (``build --verify`` fails: the generated or deploy module disagrees with the analysis
or the interpreter, or raises). A mismatch is classified: ``in-place`` when the same module
without ``inplace=True`` passes, ``names`` when the plain-named spec passes, else ``other``.

Used by tests/test_fuzz.py (a few hundred cases) and bench/fuzz.py (thousands).
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hypothesis import strategies as st

from archspec.ops import OPS, REQUIRED, USER_OPS, OpShapeError

# --- names -------------------------------------------------------------------------------------------

_MODULE_ATTRS = ["eval", "train", "to", "parameters", "training", "forward", "modules", "children", "buffers",
                 "state_dict", "load_state_dict", "cuda", "cpu", "float", "double", "half", "type", "apply",
                 "zero_grad", "named_modules", "add_module", "register_buffer", "get_submodule", "requires_grad_",
                 "extra_repr", "_modules", "_parameters", "_buffers", "dump_patches", "call_super_init", "bfloat16",
                 "share_memory", "channels_last", "from_trained"]
_LOCALS = ["x", "out", "identity", "branch1", "branch2", "branch3x3", "branch", "t", "x_", "outputs", "target",
           "in_channels", "num_classes", "aux_logits", "self", "loss", "logits", "fused", "layer", "_"]
_IMPORTS = ["torch", "nn", "F", "Tensor", "Optional", "Union", "Tuple", "namedtuple", "annotations", "collections",
            "typing"]
_BUILTINS = ["input", "len", "range", "sum", "max", "min", "print", "super", "isinstance", "list", "dict", "int",
             "bool", "object", "id", "iter", "next", "abs", "zip", "match", "case", "type", "class_", "None_",
             "lambda_", "on", "yes", "null"]
_LANGUAGE = ["relu", "conv2d", "linear", "dropout", "flatten", "scale", "concat", "add", "repeat", "body", "weight",
             "bias", "running_mean", "size", "count", "index", "_fields", "_asdict", "_aux", "__x", "ｘ", "if_"]
POOL = {
    "module": _MODULE_ATTRS + _LOCALS + _IMPORTS + _BUILTINS + _LANGUAGE,
    "aux": _MODULE_ATTRS + _LOCALS + _IMPORTS + _BUILTINS + _LANGUAGE,
    "arg": ["n", "k", "p", "s", "out", "x_", "t", "identity", "branch1", "in_channels", "num_classes", "self",
            "torch", "F", "nn", "Tensor", "int", "float", "bool", "size", "range", "_modules", "training", "eval",
            "aux_logits", "channels_last", "super", "_", "outputs", "x"],
    "block": ["Module", "Sequential", "ReLU", "Conv2d", "Linear", "Identity", "Dropout", "BatchNorm2d", "Tensor",
              "F", "nn", "torch", "Optional", "Union", "namedtuple", "loss", "Net", "NetOutputs", "NetDeploy", "super",
              "int", "x", "out", "_Blk", "block", "relu", "Inception", "Permute", "LayerNorm2d", "StochasticDepth"],
    "model": ["torch", "nn", "F", "typing", "collections", "os", "sys", "math", "Tensor", "namedtuple", "loss",
              "model", "x", "net_", "eval"],
    "class": ["Tensor", "F", "nn", "Module", "Optional", "Union", "namedtuple", "loss", "torch", "Sequential", "Net",
              "NetOutputs", "x"],
    "file": ['x"""y', "my net", "a'b", "back\\slash", "new\nline", "tab\there", "dollar$", "ünï", "{{ j }}",
             "nul\u2028sep"],
}
PLAIN = {"module": "m", "aux": "aux", "arg": "a", "block": "Blk", "model": "net", "class": "Net", "file": "net"}
DESCRIPTIONS = ['with "quotes"', 'triple """ quotes', "back\\slash", "line\nbreak", "tab\there", "unicode é ✓",
                "'''", "{{ jinja }} {% raw %}", "# not a comment", "ends with a backslash \\", "\u2028 separator"]
_PH = re.compile(r"qq(\d+)qq")


@dataclass
class Case:
    """One drawn spec: files (relative path -> data with placeholders) and its names."""

    files: dict
    main: str  # placeholder file name of the spec to build
    names: dict  # placeholder -> (hostile name or None, plain name)
    features: set = field(default_factory=set)

    def name_of(self, ph: str, plain: bool) -> str:
        hostile, safe = self.names[ph]
        return safe if plain or hostile is None else hostile

    def sub(self, value, plain: bool):
        if isinstance(value, str):
            return _PH.sub(lambda m: self.name_of(m.group(0), plain), value)
        if isinstance(value, list):
            return [self.sub(v, plain) for v in value]
        if isinstance(value, dict):
            return {self.sub(k, plain): self.sub(v, plain) for k, v in value.items()}
        return value

    def render(self, plain: bool = False) -> dict:
        """relative path -> YAML text, with hostile names (or plain ones)."""
        return {self.sub(path, plain): yaml.safe_dump(self.sub(data, plain), sort_keys=False, allow_unicode=True,
                                                      default_flow_style=False, width=1 << 20)
                for path, data in self.files.items()}

    def text(self, plain: bool = False) -> str:
        return "\n".join(f"--- {path}\n{text}" for path, text in self.render(plain).items())


# --- shapes ------------------------------------------------------------------------------------------

def _attrs(op: str, given: dict) -> dict:
    out = {a.name: a.default for a in OPS[op].attrs if a.default is not REQUIRED}
    out.update(given)
    return out


def _shape(op: str, shape, given: dict):
    """The output shape of ``op`` on ``shape`` by the catalog's own rule, or None when invalid."""
    try:
        return tuple(OPS[op].shape([tuple(shape)], _attrs(op, given)))
    except (OpShapeError, KeyError, TypeError, ZeroDivisionError):
        return None


def _fits(mode: str, before, after) -> bool:
    if after is None:
        return False
    if mode == "neutral":
        return tuple(after) == tuple(before)
    if mode == "keep_hw":
        return len(after) == len(before) and tuple(after[1:]) == tuple(before[1:])
    return True


# --- the generator -----------------------------------------------------------------------------------

@dataclass
class _Arg:
    ph: str
    type: str
    value: object
    sampler: object = None  # draws another valid value (free arguments: shape-neutral)
    default: object = None
    has_default: bool = False


@dataclass
class _Owner:
    kind: str  # model | block
    args: list = field(default_factory=list)
    modules: set = field(default_factory=set)
    ph: str = ""  # the block's name
    uses: set = field(default_factory=set)  # blocks its body calls
    in_shape: tuple | None = None  # a block's input (in_channels, in_h, in_w)


@dataclass
class _Block:
    ph: str
    owner: _Owner
    data: dict
    in_shape: tuple
    out_shape: tuple
    uses: set  # blocks it calls


def _lit(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return f"({v[0]},)" if len(v) == 1 else f"({', '.join(map(str, v))})"
    return repr(v)


class _Gen:
    def __init__(self, draw, hostile: int):
        self.draw = draw
        self.hostile = hostile  # percent of names drawn from the hostile pool
        self.names: dict = {}
        self.blocks: dict = {}  # ph -> _Block
        self.block_names: set = set()
        self.features: set = set()
        self.literal_convs = False  # transforms: kernels and paddings as literals, dilation and groups 1
        self.stack: list = []  # blocks being defined (no recursion)
        self.focus = None  # an op or merge drawn more often in this case (pick_focus)

    # -- helpers --
    def d(self, strategy):
        return self.draw(strategy)

    def chance(self, percent: int) -> bool:
        return self.d(st.integers(0, 99)) < percent

    def pick(self, options):
        return self.d(st.sampled_from(list(options)))

    def pick_focus(self, options):
        """One of ``options``; half the time the case's focus (an op or merge drawn once per case)
        when it is one of them, so that every op is drawn in each of its forms within a few hundred
        cases however long the catalog grows."""
        if self.focus in options and self.chance(50):
            return self.focus
        return self.pick(options)

    def name(self, kind: str, taken: set) -> str:
        ph = f"qq{len(self.names)}qq"
        hostile = None
        if self.hostile and self.chance(self.hostile // 2 if kind in ("model", "class", "file") else self.hostile):
            cand = self.pick(POOL[kind])
            if cand not in {self.names[t][0] for t in taken}:
                hostile = cand
                self.features.add("hostile name")
        self.names[ph] = (hostile, f"{PLAIN[kind]}{len(self.names)}")
        taken.add(ph)
        return ph

    # -- expressions in an owner's scope --
    def new_arg(self, owner: _Owner, type_: str, value, sampler=None) -> str:
        ph = self.name("arg", {a.ph for a in owner.args})
        arg = _Arg(ph, type_, value, sampler)
        if owner.kind == "model" or self.chance(40):
            arg.has_default, arg.default = True, value
        owner.args.append(arg)
        self.features.add(f"{owner.kind} argument {type_}")
        return ph

    def expr(self, owner: _Owner | None, value, type_: str, sampler=None, literal: bool = False) -> str:
        """An expression in ``owner``'s scope that evaluates to ``value``."""
        if type_ == "op":
            return value
        if owner is not None and not literal and sampler is None and self.chance(20):
            form = self.form(owner, value, type_)
            if form is not None:
                return form
        if owner is None or literal or self.chance(70):
            return _lit(value)
        same = [a for a in owner.args if a.type == type_ and a.sampler is None and a.value == value]
        if type_ == "int" and not isinstance(value, bool):
            ints = [a for a in owner.args if a.type == "int" and a.sampler is None]
            if ints and self.chance(40):
                a = self.pick(ints)
                self.features.add("arithmetic")
                if a.value and value % a.value == 0 and 1 < value // a.value <= 4:
                    return f"{a.ph} * {value // a.value}"
                if a.value and value == a.value // 2 and a.value % 2 == 0:
                    return f"{a.ph} // 2"
                diff = value - a.value
                return f"{a.ph} + {diff}" if diff >= 0 else f"{a.ph} - {-diff}"
        if same and self.chance(50):
            return self.pick(same).ph
        return self.new_arg(owner, type_, value, sampler)

    def form(self, owner: _Owner, value, type_: str):
        """``value`` written with the language's other forms (issue 11): the block's input size,
        functions, comparisons, a choice; None where none fits."""
        ins = owner.in_shape or ()
        if type_ == "int" and isinstance(value, int) and not isinstance(value, bool):
            sizes = [n for n, v in zip(("in_channels", "in_h", "in_w"), ins) if v == value]
            if sizes and self.chance(60):
                self.features.add("in_channels" if sizes[0] == "in_channels" else "in_h")
                return self.pick(sizes)
            self.features.add("function expression")
            forms = [f"max({value}, {value - 2})", f"min({value}, {value + 1})", f"{value} if {value} != 3 else 3",
                     f"({value} * 3) // 3"]
            if value >= 0:
                forms += [f"int({value} + 0.25)", f"round({value} + 0.25)", f"ceil({value} - 0.5)",
                          f"floor({value} + 0.5)", f"make_divisible({value}, 1)" if value >= 1 else str(value)]
            return self.pick(forms)
        if type_ == "bool":
            self.features.add("comparison")
            a = self.d(st.integers(-3, 3))
            return self.pick([f"{a} {'<' if value else '>='} {a + 1}", f"not ({'false' if value else 'true'})",
                              f"{a} == {a} {'and' if value else 'and not'} true",
                              f"{'true' if value else 'false'} or {a} > {a}"])
        if type_ == "float" and isinstance(value, float) and value >= 0:
            self.features.add("function expression")
            return f"max({value!r}, 0.0)"
        return None

    # -- calls --
    def call(self, op: str, values: dict, owner, types: dict, samplers: dict | None = None, literal=()) -> str:
        """``op(...)``: the given attributes, positionally as far as they run in catalog order, then keywords."""
        samplers = samplers or {}
        if op == "conv2d" and self.literal_convs:  # what transforms can read
            literal = ("kernel_size", "padding", "dilation", "groups")
        attrs = [a.name for a in OPS[op].attrs]
        given = [a for a in attrs if a in values]
        run = 0
        while run < len(given) and given[run] == attrs[run]:
            run += 1
        npos = self.d(st.integers(0, run)) if run else 0
        parts = []
        for i, a in enumerate(given):
            e = self.expr(owner, values[a], types.get(a, "int"), samplers.get(a), literal=a in literal)
            parts.append(e if i < npos else f"{a}={e}")
        if not parts and self.chance(50):
            return op
        return f"{op}({', '.join(parts)})"

    def op_call(self, op: str, owner, shape, mode: str):
        """(call text, output shape) of a random valid use of ``op`` on ``shape`` in ``mode``, or None."""
        for _ in range(4):
            got = self._op_call(op, owner, shape, mode)
            if got is not None:
                return got
        return None

    def _op_call(self, op: str, owner, shape, mode: str):
        rank3 = len(shape) == 3
        f = st.sampled_from
        if op == "conv2d":
            if not rank3:
                return None
            c, h, w = shape
            out = c if mode == "neutral" else self.d(st.integers(1, 6))
            n = self.pick([1, 3, 3, 5] + ([5, 7] if self.literal_convs else []))
            form = "square" if self.literal_convs or n == 1 else self.pick(["square", "square", "1xn", "nx1"])
            dil = 1 if self.literal_convs or n == 1 else self.d(st.integers(1, 2))
            half = dil * (n - 1) // 2
            if mode in ("neutral", "keep_hw"):
                stride, pad = 1, half
            else:
                stride, pad = self.d(st.integers(1, 2)), self.d(st.integers(0, half + 1))
            k = n if form == "square" else ((1, n) if form == "1xn" else (n, 1))
            p = pad if form == "square" else ((0, pad) if form == "1xn" else (pad, 0))
            divisors = [g for g in range(1, min(c, out) + 1) if c % g == 0 and out % g == 0]
            groups = 1 if self.literal_convs else (divisors[-1] if self.focus == "conv2d" and self.chance(50)
                                                   else self.pick(divisors))
            values = {"out_channels": out, "kernel_size": k}
            if stride != 1 or self.chance(20):
                values["stride"] = stride
            if p != 0 or self.chance(20):
                values["padding"] = p
            if dil != 1:
                values["dilation"] = dil
            if groups != 1:
                values["groups"] = groups
                self.features.add("grouped conv")
            if self.chance(40):
                values["bias"] = self.d(st.booleans())
            result = _shape(op, shape, values)
            if not _fits(mode, shape, result):
                return None
            return self.call(op, values, owner, {"kernel_size": "size", "padding": "size", "stride": "size",
                                                 "dilation": "size", "bias": "bool"},
                             {"bias": lambda: self.d(st.booleans())}), result
        if op == "batchnorm2d":
            if not rank3:
                return None
            values = {}
            if self.chance(40):
                values["eps"] = self.pick([1e-5, 1e-3, 0.1])
            if self.chance(30):
                values["momentum"] = self.pick([0.1, 0.3, 0.0, 1.0])
            if self.chance(25):
                values["affine"] = self.d(st.booleans())
            if self.chance(25):
                values["track_running_stats"] = self.d(st.booleans())
            return self.call(op, values, owner, {"eps": "float", "momentum": "float", "affine": "bool",
                                                 "track_running_stats": "bool"},
                             {"eps": lambda: self.pick([1e-5, 1e-3, 0.1]), "momentum": lambda: self.pick([0.1, 0.5]),
                              "affine": lambda: self.d(st.booleans()),
                              "track_running_stats": lambda: self.d(st.booleans())}), shape
        if op in ("maxpool2d", "avgpool2d"):
            if not rank3:
                return None
            small = min(shape[1], shape[2])
            if mode in ("neutral", "keep_hw"):
                k = self.pick([1, 3] if small >= 1 else [1])
                values = {"kernel_size": k, "stride": 1, "padding": k // 2}
            else:
                k = self.d(st.integers(1, max(1, min(3, small))))
                values = {"kernel_size": k}
                s = self.pick([None, None, 1, 2])
                if s is not None:
                    values["stride"] = s
                if self.chance(40):
                    values["padding"] = self.d(st.integers(0, k // 2))
                if self.chance(40):
                    values["ceil_mode"] = self.d(st.booleans())
                if op == "maxpool2d" and k > 1 and self.chance(20):
                    values["dilation"] = 2
            if op == "avgpool2d" and self.chance(30):
                values["count_include_pad"] = self.d(st.booleans())
            result = _shape(op, shape, values)
            if not _fits(mode, shape, result):
                return None
            return self.call(op, values, owner, {"kernel_size": "size", "stride": "size", "padding": "size",
                                                 "dilation": "size", "ceil_mode": "bool", "count_include_pad": "bool"},
                             {"count_include_pad": lambda: self.d(st.booleans())}), result
        if op in ("adaptive_avgpool2d", "adaptive_maxpool2d"):
            if not rank3:
                return None
            if mode == "any":
                size = self.pick([1, 1, 2, (1, 2), 3])
            else:
                size = shape[1] if shape[1] == shape[2] else (shape[1], shape[2])
            result = _shape(op, shape, {"output_size": size})
            if not _fits(mode, shape, result):
                return None
            return self.call(op, {"output_size": size}, owner, {"output_size": "size"}), result
        if op == "local_response_norm":
            if not rank3:
                return None
            values = {"size": self.d(st.integers(1, 5))}
            for a, options in (("alpha", [1e-4, 0.01, 1.0]), ("beta", [0.75, 0.5]), ("k", [1.0, 2.0])):
                if self.chance(30):
                    values[a] = self.pick(options)
            return self.call(op, values, owner, {"alpha": "float", "beta": "float", "k": "float"},
                             {"alpha": lambda: self.pick([1e-4, 0.01]), "beta": lambda: self.pick([0.75, 0.5]),
                              "k": lambda: self.pick([1.0, 2.0])}), shape
        if op == "linear":
            if rank3:
                return None
            out = shape[0] if mode == "neutral" else self.d(st.integers(1, 8))
            values = {"out_features": out}
            if self.chance(30):
                values["bias"] = self.d(st.booleans())
            return self.call(op, values, owner, {"bias": "bool"}, {"bias": lambda: self.d(st.booleans())}), (out,)
        if op == "dropout":
            values = {"p": self.pick([0.0, 0.2, 0.5, 1.0])} if self.chance(70) else {}
            return self.call(op, values, owner, {"p": "float"}, {"p": lambda: self.pick([0.0, 0.1, 0.5])}), shape
        if op == "flatten":
            if mode != "any" and len(shape) != 1:
                return None
            return self.pick(["flatten", "flatten(1)", "flatten(start_dim=1)"]), (math.prod(shape),)
        if op == "scale":
            factor = self.pick([0.5, -1.0, 2, 0.17])
            return self.call(op, {"factor": factor}, owner, {"factor": "float"},
                             {"factor": lambda: self.pick([0.5, -2.0, 0.1])}), shape
        if op in ("relu", "identity") or op in self.PLAIN_ACTS:
            return (op if self.chance(70) else f"{op}()"), shape
        return self._new_op_call(op, owner, shape, mode)

    PLAIN_ACTS = ["relu6", "silu", "mish", "sigmoid", "tanh", "hardswish", "hardsigmoid"]

    def _new_op_call(self, op: str, owner, shape, mode: str):
        """The ops of issue 11 (activations with attributes, norms, layout, stochastic depth, parameter)."""
        rank3 = len(shape) == 3
        floats = {"negative_slope": "float", "alpha": "float", "min_val": "float", "max_val": "float", "eps": "float",
                  "p": "float", "init": "float", "elementwise_affine": "bool", "bias": "bool", "affine": "bool",
                  "dims": "ints", "shape": "ints"}
        if op in ("leaky_relu", "elu", "hardtanh", "gelu", "softmax"):
            values = {"leaky_relu": {"negative_slope": self.pick([0.01, 0.2, -0.5])}, "elu": {"alpha": self.pick([1.0, 0.5])},
                      "hardtanh": {"min_val": self.pick([-1.0, -6.0]), "max_val": self.pick([1.0, 6.0, 0.5])},
                      "gelu": {"approximate": self.pick(["none", "tanh"])},
                      "softmax": {"dim": self.pick([1, -1, len(shape)])}}[op]
            if op == "gelu":  # a word: always a literal
                text = "gelu" if values["approximate"] == "none" and self.chance(50) else f"gelu(approximate='{values['approximate']}')"
                return text, shape
            return self.call(op, values, owner, floats), shape
        if op in ("layernorm", "layernorm2d", "groupnorm"):
            if (op == "layernorm2d") != rank3 or (op != "groupnorm" and shape[0 if op != "layernorm" else -1] == 1):
                return None  # normalising single values: zeros whose gradient is rounding noise on both sides
            values = {"eps": self.pick([1e-5, 1e-6, 0.1])} if self.chance(40) else {}
            if op == "groupnorm":
                groups = [g for g in range(1, shape[0] + 1) if shape[0] % g == 0 and math.prod(shape) // g > 1]
                if not groups:
                    return None
                values["num_groups"] = self.pick(groups)
                if self.chance(25):
                    values["affine"] = self.d(st.booleans())
            elif self.chance(30):
                values["elementwise_affine"] = self.d(st.booleans())
                if values["elementwise_affine"] and self.chance(50):
                    values["bias"] = False
            return self.call(op, values, owner, floats), shape
        if op == "channel_shuffle":
            if not rank3:
                return None
            groups = self.pick([g for g in range(1, shape[0] + 1) if shape[0] % g == 0])
            return self.call(op, {"groups": groups}, owner, {}), shape
        if op == "permute":
            if not rank3:
                return None
            dims = (0, *self.d(st.permutations([1, 2, 3])))
            if mode == "neutral" and tuple(shape[d - 1] for d in dims[1:]) != tuple(shape):
                dims = (0, 1, 2, 3)
            result = _shape(op, shape, {"dims": dims})
            if not _fits(mode, shape, result):
                return None
            return f"permute(({', '.join(map(str, dims))}))", result
        if op == "reshape":
            if mode != "any":
                return None
            total = math.prod(shape)
            sizes = self.pick([(-1,), (total,)] + ([(shape[0], -1, 1), (shape[0], shape[2], shape[1])] if rank3 else []))
            return f"reshape(({', '.join(map(str, sizes))},))", _shape(op, shape, {"shape": sizes})
        if op == "stochastic_depth":
            values = {"p": self.pick([0.0, 0.2, 0.5, 1.0])}
            text = self.call(op, values, owner, floats, {"p": lambda: self.pick([0.0, 0.3])})
            if self.chance(30):
                text = f"{text[:-1]}, mode='{self.pick(['row', 'batch'])}')"
            return text, shape
        if op == "parameter":
            p = tuple(self.pick([s, 1]) for s in shape) if self.chance(70) else (shape[0],) + (1,) * (len(shape) - 1)
            values = {"shape": p, "init": self.pick([1.0, 0.5, -2.0, 0.0])}
            text = self.call(op, values, owner, floats, literal=("shape",))
            if self.chance(30):
                text = f"{text[:-1]}, apply='add')"
            return text, shape
        raise AssertionError(op)

    # -- items of a body (the model's or a block's) --
    NEW_ANY = ["relu6", "leaky_relu", "elu", "gelu", "silu", "mish", "sigmoid", "tanh", "hardswish", "hardsigmoid",
               "hardtanh", "softmax", "groupnorm", "reshape", "stochastic_depth", "parameter"]
    MAP_OPS = ["conv2d", "conv2d", "conv2d", "batchnorm2d", "relu", "relu", "maxpool2d", "avgpool2d", "adaptive_avgpool2d",
               "adaptive_maxpool2d", "local_response_norm", "identity", "scale", "dropout", "flatten",
               *NEW_ANY, "layernorm2d", "channel_shuffle", "permute"]
    FLAT_OPS = ["linear", "linear", "relu", "identity", "scale", "dropout", "flatten", *NEW_ANY, "layernorm"]
    STATEFUL = {"conv2d", "batchnorm2d", "linear", "dropout", "layernorm", "layernorm2d", "groupnorm",
                "stochastic_depth", "parameter"}
    FUNCTION_ONLY = {"scale", "reshape"}  # no module form: never named, never a Sequential entry

    def items(self, owner: _Owner, shape, mode: str, count: int, depth: int) -> tuple:
        out = []
        for _ in range(count):
            got = self.item(owner, shape, mode, depth)
            if got is None:
                continue
            item, shape = got
            out.append(item)
        return out, shape

    def item(self, owner: _Owner, shape, mode: str, depth: int):
        kind = self.pick(["op"] * 6 + ["merge"] * (2 if depth < 3 else 0) + ["seq"] * (3 if depth < 3 else 0)
                         + ["block"] * (2 if depth < 2 and len(self.stack) < 2 else 0)
                         + ["group", "loop", "table"] * (depth < 3) + ["act"] * (owner.kind == "block"))
        if kind in ("group", "loop", "table", "act"):
            return self.construct(kind, owner, shape, depth)
        if kind == "merge":
            return self.merge(owner, shape, mode, depth + 1)
        if kind == "seq":
            return self.sequential_item(owner, shape, mode, depth + 1)
        if kind == "block":
            got = self.block_call(owner, shape, mode, depth + 1)
            if got is None:
                return None
            call, result = got
            return {self.name("module", owner.modules): call}, result
        op = self.pick_focus(self.MAP_OPS if len(shape) == 3 else self.FLAT_OPS)
        got = self.op_call(op, owner, shape, mode)
        if got is None:
            return None
        call, result = got
        self.features.add(op)
        named = op in self.STATEFUL or (op not in self.FUNCTION_ONLY and self.chance(35))
        if not named:
            self.features.add("functional op")
            return call, result
        self.features.add("named op")
        item = {self.name("module", owner.modules): call}
        if result == tuple(shape) and self.chance(20):  # shape-neutral: may be absent
            item["if"] = self.condition(owner)
        return item, result

    # -- groups, loops, op arguments (issue 11): shape-neutral, so that any count or condition fits --
    def construct(self, kind: str, owner: _Owner, shape, depth: int):
        if kind == "group":
            body, _ = self.items(owner, shape, "neutral", self.d(st.integers(1, 2)), depth + 1)
            if not body:
                return None
            self.features.add("conditional group")
            return {"if": self.condition(owner), "body": body}, shape
        if kind == "act":
            return {self.name("module", owner.modules): self.op_arg(owner)}, shape
        body = self.loop_body(owner, shape, "idx" if kind == "loop" else "row")
        if not body:
            return None
        if kind == "loop":
            self.features.add("named repeat")
            count = self.new_arg(owner, "int", self.d(st.integers(0, 3)), lambda: self.d(st.integers(0, 3))) \
                if self.chance(50) else str(self.d(st.integers(0, 3)))
            return {"repeat": count, "as": "idx", "body": body}, shape
        self.features.add("for table")
        rows = [[r, self.pick([0.5, 1.0, 2.0])] for r in range(self.d(st.integers(1, 3)))]
        return {"for": ["row", "factor"], "in": rows, "body": body}, shape

    def loop_body(self, owner: _Owner, shape, var: str) -> list:
        """A loop's body: modules named by a template over the loop variable, an argument from it."""
        body = []
        for _ in range(self.d(st.integers(1, 2))):
            ops = [o for o in (self.MAP_OPS if len(shape) == 3 else self.FLAT_OPS) if o not in self.FUNCTION_ONLY]
            got = self.op_call(self.pick(ops), owner, shape, "neutral")
            if got is not None:
                name = self.name("module", owner.modules)
                body.append({f"{name}_{{{var}}}": got[0]})
        if self.chance(50):
            body.append(f"scale({var} + 1)" if var == "idx" else "scale(factor)")
            self.features.add("loop variable in an argument")
        if body and self.chance(30):
            first = body[0]
            if isinstance(first, dict):
                first["if"] = f"{var} != 1"
        return body

    OP_VALUES = ["relu", "relu6", "hardswish", "silu", "gelu", "gelu(approximate='tanh')", "leaky_relu(0.1)",
                 "sigmoid", "tanh", "identity", "elu(0.5)", "mish", "hardsigmoid"]

    def op_arg(self, owner: _Owner) -> str:
        """An argument of type op of the block (an activation: any shape keeps it), new or reused."""
        ops = [a for a in owner.args if a.type == "op"]
        if ops and self.chance(50):
            return self.pick(ops).ph
        self.features.add("op argument")
        value = self.pick(self.OP_VALUES)
        return self.new_arg(owner, "op", value, lambda: self.pick(self.OP_VALUES))

    def condition(self, owner: _Owner):
        self.features.add("if")
        value = self.chance(75)
        if self.chance(40):
            return value
        return self.expr(owner, value, "bool", lambda: self.d(st.booleans()))

    # -- merges --
    def merge(self, owner: _Owner, shape, mode: str, depth: int):
        kind = self.pick_focus(["concat", "add", "mul"])
        nb = self.d(st.integers(2, 3))
        flat = len(shape) == 1
        reduce = None
        if not flat and mode == "any" and self.chance(30):  # every branch downsamples the same way
            k, s = self.pick([(3, 2), (2, 2), (1, 2), (3, 1)]), None
            k, s = k
            p = self.d(st.integers(0, k // 2))
            reduce = {"kernel_size": k, "stride": s, "padding": p}
            if _shape("maxpool2d", shape, reduce) is None:
                reduce = None
        split, full = None, shape
        if reduce is None and shape[0] % nb == 0 and self.chance(60 if self.focus == kind else 25):  # chunk i
            split = nb if self.chance(50) else [shape[0] // nb] * nb
            shape = (shape[0] // nb, *shape[1:])
        if kind != "concat":
            target = shape[0] if mode == "neutral" or self.chance(50) else self.d(st.integers(1, 6))
        else:
            target = None
        if mode == "neutral" and kind == "concat":
            kind = "add"
            target = shape[0]
        branches, outs = [], []
        for j in range(nb):
            got = self.branch(owner, shape, kind, target, reduce, depth, first=(j == 0))
            if got is None:
                return None
            branch, result = got
            branches.append(branch)
            outs.append(result)
        try:
            result = tuple(OPS[kind].shape([tuple(o) for o in outs], {}))
        except OpShapeError:
            return None
        if not _fits(mode, full, result):
            return None
        self.features.add(kind)
        if depth > 1:
            self.features.add(f"nested {kind}")
        if split is None and kind != "concat" and self.chance(30):  # a branch there only when a condition holds
            j = self.d(st.integers(1, nb - 1))
            rest = [o for k, o in enumerate(outs) if k != j]
            try:
                without = tuple(OPS[kind].shape([tuple(o) for o in rest], {})) if len(rest) > 1 else tuple(rest[0])
            except OpShapeError:
                without = None
            if without == result:
                branch = branches[j]
                branches[j] = {"if": self.condition(owner), "body": branch if isinstance(branch, list) else [branch]}
                self.features.add("conditional branch")
        item = {kind: branches}
        if split is not None:
            item["split"] = split
            self.features.add(f"split in {kind}")
        if tuple(result) == tuple(full) and self.chance(15):
            item["if"] = self.condition(owner)
            self.features.add("if on a merge")
        return item, result

    def gate(self, owner: _Owner, shape, target):
        """A squeeze-and-excitation branch of a mul: pool to 1 x 1, a 1x1 convolution, a sigmoid."""
        self.features.add("gate branch in mul")
        return ["adaptive_avgpool2d(1)", {self.name("module", owner.modules): f"conv2d({target}, 1)"},
                self.pick(["sigmoid", "hardsigmoid"])], (target, 1, 1)

    def branch(self, owner: _Owner, shape, kind: str, target, reduce, depth: int, first: bool):
        flat = len(shape) == 1
        if kind == "mul" and not first and not flat and reduce is None and self.chance(40):
            return self.gate(owner, shape, target)
        if reduce is None and (kind == "concat" or target == shape[0]) and self.chance(25):
            self.features.add(f"identity branch in {kind}")
            return [], shape
        items, cur = [], tuple(shape)
        if reduce is not None:
            if self.chance(50):
                values = {"out_channels": target or self.d(st.integers(1, 5)), **reduce}
                op = "conv2d"
            else:
                values = dict(reduce)
                op = self.pick(["maxpool2d", "avgpool2d"])
            cur = _shape(op, cur, values)
            if cur is None:
                return None
            call = self.call(op, values, owner, {"kernel_size": "size", "stride": "size", "padding": "size"})
            items.append({self.name("module", owner.modules): call} if op == "conv2d" or self.chance(40) else call)
            self.features.add("downsampling branches")
        if first and kind != "concat" and not flat and self.chance(40):  # torchvision's relu at a branch's head
            items.append("relu" if self.chance(50) else {self.name("module", owner.modules): "relu"})
            self.features.add("relu first in a branch")
        more, cur = self.items(owner, cur, "keep_hw" if not flat else "any", self.d(st.integers(0, 2)), depth)
        items += more
        if len(cur) != len(shape):
            return None
        if kind != "concat" and cur[0] != target:
            op = "linear" if flat else "conv2d"
            values = {"out_features": target} if flat else {"out_channels": target, "kernel_size": 1}
            call = self.call(op, values, owner, {"kernel_size": "size"})
            items.append({self.name("module", owner.modules): call})
            cur = (target,) if flat else (target, *cur[1:])
        if not items:
            return [], cur
        form = self.pick(["list", "list", "single", "sequential"])
        if form == "single" and len(items) == 1 and not (isinstance(items[0], dict) and "body" in items[0]):
            # (a group alone would be a conditional branch: {if: c, body: [...]} as a branch)
            self.features.add("single-item branch")
            return items[0], cur
        if form == "sequential" and all(isinstance(i, str) or (len(i) == 1 and isinstance(next(iter(i.values())), str))
                                        for i in items) and not any(isinstance(i, dict) and "if" in i for i in items):
            entries = [i if isinstance(i, str) else next(iter(i.values())) for i in items]
            if all(e.split("(")[0] not in (*self.FUNCTION_ONLY, "parameter") for e in entries):
                self.features.add("Sequential branch")
                return {self.name("module", owner.modules): entries}, cur
        return items, cur

    # -- nn.Sequential --
    def sequential_item(self, owner: _Owner, shape, mode: str, depth: int):
        entries, result = self.entries(owner, shape, mode, depth, self.d(st.integers(1, 4)))
        if not entries or not _fits(mode, shape, result):
            return None
        self.features.add("Sequential")
        if (len(entries) + depth) % 3 == 1 and all(isinstance(e, (str, list)) for e in entries):
            # named entries (an OrderedDict), names that are no identifiers among them (RegNet's
            # block1-0); decided from what is drawn already, so that the other cases stay as they were
            style = ["block{d}-{k}", "{k}x{d}", "s{k}", "class", "b-{k}"][len(owner.modules) % 5]
            keys = [style.format(d=depth, k=k) if "{" in style else f"{style}{k}" for k in range(len(entries))]
            entries = [{key: e} for key, e in zip(keys, entries)]
            self.features.add("named Sequential entries")
        return {self.name("module", owner.modules): entries}, result

    def entries(self, owner, shape, mode, depth, count):
        out, cur = [], tuple(shape)
        for _ in range(count):
            kind = self.pick(["op"] * 5 + ["repeat", "group", "table"] + ["nested"] * (1 if depth < 3 else 0)
                             + ["block"] * (1 if depth < 3 and len(self.stack) < 2 else 0)
                             + ["act"] * (owner.kind == "block"))
            if kind == "act":
                out.append(self.op_arg(owner))
                self.features.add("op argument in a Sequential")
                continue
            if kind in ("repeat", "group", "table"):
                body, after = self.entries(owner, cur, "neutral", depth + 1, self.d(st.integers(1, 2)))
                if body:
                    out.append(self.seq_construct(kind, owner, body, depth))
                continue
            if kind == "nested":
                inner, after = self.entries(owner, cur, mode if mode != "any" else "any", depth + 1, self.d(st.integers(1, 2)))
                if inner and _fits(mode, cur, after):
                    out.append(inner)
                    cur = after
                    self.features.add("nested Sequential")
                continue
            if kind == "block":
                got = self.block_call(owner, cur, mode, depth + 1)
                if got is not None:
                    out.append(got[0])
                    cur = got[1]
                    self.features.add("block in a Sequential")
                continue
            op = self.pick_focus([o for o in (self.MAP_OPS if len(cur) == 3 else self.FLAT_OPS)
                                  if o not in self.FUNCTION_ONLY and o != "parameter"])
            got = self.op_call(op, owner, cur, mode)
            if got is not None:
                out.append(got[0])
                cur = got[1]
                self.features.add(f"{op} in a Sequential")
        return out, cur

    def seq_construct(self, kind: str, owner: _Owner, body: list, depth: int) -> dict:
        """A repeat (its count possibly a free argument: instances of a block then differ), a table or
        a conditional group of shape-neutral entries."""
        if kind == "group":
            self.features.add("conditional group in a Sequential")
            return {"if": self.condition(owner), "body": body}
        if kind == "table":
            self.features.add("for table in a Sequential")
            return {"for": f"r{depth}", "in": list(range(self.d(st.integers(0, 3)))), "body": body}
        n = self.d(st.integers(0, 3))
        if self.chance(50):
            count = self.expr(owner, n, "int")
        elif owner.kind == "block" and self.chance(50):
            count = self.new_arg(owner, "int", n, lambda: self.d(st.integers(0, 3)))
            self.features.add("repeat count of an instance")
        else:
            count = str(n)
        self.features.add("repeat")
        return {"repeat": count, **({"as": f"i{depth}"} if self.chance(30) else {}), "body": body}

    # -- blocks --
    def block_call(self, owner: _Owner, shape, mode: str, depth: int):
        reusable = [b for b in self.blocks.values() if b.in_shape == tuple(shape) and _fits(mode, shape, b.out_shape)
                    and b.ph not in self.stack and not (b.uses & set(self.stack))]
        if reusable and self.chance(60):
            block = self.pick(reusable)
            self.features.add("block reused")
        else:
            block = self.new_block(shape, mode, depth)
            if block is None:
                return None
        owner.uses.add(block.ph)
        parts, kw = [], False
        for a in block.owner.args:
            value = a.sampler() if a.sampler is not None and self.chance(50) else a.value
            if a.has_default and value == a.default and self.chance(50):
                kw = True
                continue
            e = self.expr(owner, value, a.type, a.sampler)
            kw = kw or self.chance(30)
            parts.append(f"{a.ph}={e}" if kw else e)
        self.features.add("block call")
        text = block.ph if not parts and self.chance(50) else f"{block.ph}({', '.join(parts)})"
        return text, block.out_shape

    def new_block(self, shape, mode: str, depth: int):
        ph = self.name("block", self.block_names)
        owner = _Owner("block", ph=ph, in_shape=tuple(shape))
        self.stack.append(ph)
        try:
            layers, result = self.items(owner, shape, mode, self.d(st.integers(1, 3)), depth)
        finally:
            self.stack.pop()
        if not layers or not _fits(mode, shape, result):
            return None
        data = {}
        if self.chance(30):
            data["doc"] = self.pick(DESCRIPTIONS) if self.hostile and self.chance(50) else "A block."
        if owner.args:
            data["args"] = {a.ph: self.arg_decl(a) for a in owner.args}
        data["layers"] = layers
        block = _Block(ph, owner, data, tuple(shape), tuple(result), owner.uses)
        self.blocks[ph] = block
        self.features.add("block")
        return block

    def arg_decl(self, a: _Arg):
        type_ = "size" if a.type == "size" else a.type
        if type_ == "op":  # an op written as it is
            return f"op = {a.default}" if a.has_default else "op"
        if a.has_default:
            if self.chance(20):
                self.features.add("long-form argument")
                return {"type": type_, "default": a.default if not isinstance(a.default, tuple) else list(a.default),
                        "doc": "an argument"}
            return f"{type_} = {_lit(a.default)}"
        return type_


# --- a whole spec ------------------------------------------------------------------------------------

@st.composite
def cases(draw, hostile: int = 15) -> Case:
    """A random valid spec from the whole language (see the module docstring). Half the specs have
    plain names only; in the others ``hostile`` percent of the names come from the hostile pool."""
    g = _Gen(draw, hostile if draw(st.booleans()) else 0)
    g.focus = draw(st.sampled_from(sorted({*OPS} - {"input", "split"})))
    model = _Owner("model")
    g.literal_convs = g.chance(25)
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(5, 11)), draw(st.integers(5, 11))
    num_classes = draw(st.integers(1, 6))
    top = _Top(g, model)
    shape = top.add((c, h, w), draw(st.integers(1, 4)))
    shape = _focus(g, top, shape)
    if len(shape) == 3 and (g.chance(35) or g.focus in ("linear", "layernorm")):  # a flat part: ops on (F,), merges
        shape = top.put("flatten" if g.chance(50) else {g.name("module", model.modules): "flatten"}, shape,
                        (math.prod(shape),))
        shape = top.add(shape, draw(st.integers(1, 3)))
        shape = _focus(g, top, shape)
    if len(shape) == 3 and g.chance(70):  # a classifier head
        if g.chance(60):
            pool, out = g.op_call("adaptive_avgpool2d", model, shape, "any")
            shape = top.put({g.name("module", model.modules): pool}, shape, out)
        shape = top.put("flatten", shape, (math.prod(shape),))
        if g.chance(40):
            shape = top.put({g.name("module", model.modules): "dropout(0.5)" if g.chance(50) else "dropout"}, shape, shape)
        shape = top.put({g.name("module", model.modules): "linear(num_classes)"}, shape, (num_classes,))
        g.features.add("linear(num_classes)")
    layers, tops = top.layers, top.tops
    if not layers:
        layers.append("relu")
    data = {"archspec": 1, "name": g.name("model", set())}
    if g.chance(15):
        data["class_name"] = g.name("class", set())
    if g.chance(20):
        data["description"] = g.pick(DESCRIPTIONS) if hostile and g.chance(60) else "A random network."
    data["input"] = [c, h, w]
    data["num_classes"] = num_classes
    aux = _aux_heads(g, model, tops, num_classes)
    if model.args:
        data["args"] = {a.ph: g.arg_decl(a) for a in model.args}
    blocks = dict(g.blocks)
    files: dict = {}
    if blocks and g.chance(25):  # some blocks (with every block they call) come from a library
        moved = _closure(blocks, {g.pick(sorted(blocks))})
        lib_path = "lib/blocks.yaml"
        files[lib_path] = {"archspec": 1, "description": "Blocks of a random network.",
                           "blocks": {ph: blocks[ph].data for ph in blocks if ph in moved}}
        blocks = {ph: b for ph, b in blocks.items() if ph not in moved}
        data["use"] = [lib_path] if g.chance(70) else lib_path
        g.features.add("use:")
    if blocks:
        data["blocks"] = {ph: b.data for ph, b in blocks.items()}
    if len(shape) == 3 and layers is top.layers and g.chance(10):  # a stock library, from any folder
        data["use"] = [*([data["use"]] if isinstance(data.get("use"), str) else data.get("use", [])),
                       "stock:lib/basic.yaml"]
        layers.append({g.name("module", model.modules): f"BasicConv2d({shape[0]}, kernel_size=1)"})
        g.features.add("stock use:")
    data["layers"] = layers
    if aux:
        data["aux"] = aux
        g.features.add("aux")
    transforms = _transforms(g, [data, *files.values()])
    if transforms:
        data["transforms"] = transforms
        g.features.add("transforms")
    file_ph = g.name("file", set())
    main = f"{file_ph}.yaml"
    if g.chance(15):
        variant = _variant(g, model, data, tops)
        if variant is not None:
            files["parent.yaml"] = data
            files[main] = variant
            g.features.add("extends")
            return Case(files, main, g.names, g.features)
    files[main] = data
    return Case(files, main, g.names, g.features)


def _focus(g: _Gen, top, shape):
    """The case's focus op in each of its forms (named, functional, an nn.Sequential entry) where
    it fits the shape, so that a few hundred cases draw every op of the catalog in every form."""
    op = g.focus
    if op not in USER_OPS:
        return shape
    spec = OPS[op]
    forms = [f for f, ok in (("named", spec.module is not None), ("function", spec.function is not None
                                                                   and op not in g.STATEFUL),
                             ("sequential", spec.module is not None and not spec.parameter)) if ok]
    for form in forms:
        got = g.op_call(op, top.model, shape, "any")
        if got is None:
            continue
        call, out = got
        g.features.add(op)
        if form == "function":
            g.features.add("functional op")
            item = call
        else:
            g.features.add("named op" if form == "named" else f"{op} in a Sequential")
            item = {g.name("module", top.model.modules): call if form == "named" else [call]}
        shape = top.put(item, shape, out)
    return shape


class _Top:
    """The model's layers, and for each its name (None: anonymous or a merge), in and out shapes and
    whether it has ``if:`` (for aux heads and edits, which address named top-level layers)."""

    def __init__(self, g: _Gen, model: _Owner):
        self.g, self.model = g, model
        self.layers: list = []
        self.tops: list = []

    def put(self, item, before, after):
        named = isinstance(item, dict) and not ({"concat", "add", "mul", "for", "body"} & set(item))
        self.tops.append((next(iter(item)) if named else None, tuple(before), tuple(after),
                          named and "if" in item))
        self.layers.append(item)
        return tuple(after)

    def add(self, shape, count: int):
        for _ in range(count):
            got = self.g.item(self.model, shape, "any", 0)
            if got is not None:
                shape = self.put(got[0], shape, got[1])
        return tuple(shape)


def _closure(blocks: dict, start: set) -> set:
    out, todo = set(), list(start)
    while todo:
        ph = todo.pop()
        if ph not in out:
            out.add(ph)
            todo.extend(blocks[ph].uses)
    return out


def _aux_heads(g: _Gen, model: _Owner, tops: list, num_classes: int) -> dict:
    named = [(i, t) for i, t in enumerate(tops) if t[0] is not None and not t[3]]
    heads: dict = {}
    taken = set(model.modules)
    for _ in range(g.d(st.integers(0, 2)) if named else 0):
        i, (src, _, shape, _) = g.pick(named)
        module = _aux_module(g, model, shape)
        if module is None:
            continue
        name = g.name("aux", taken)
        head = {"from": src}
        later = [t for j, t in named if j >= i]
        if g.chance(40):
            head["after"] = g.pick(later)[0]
            g.features.add("aux after:")
        head["loss_weight"] = g.pick([0.3, 1.0, 0.0])
        head["module"] = module
        heads[name] = head
    return heads


def _aux_module(g: _Gen, model: _Owner, shape):
    form = g.pick(["call", "list", "block"])
    if form == "block":
        got = g.block_call(model, shape, "any", 1)
        if got is not None:
            g.features.add("aux block")
            return got[0]
    if len(shape) == 3:
        entries, cur = [g.op_call("adaptive_avgpool2d", model, shape, "any")[0], "flatten"], None
        if form == "call":
            got = g.op_call(g.pick(["conv2d", "batchnorm2d", "maxpool2d", "local_response_norm"]), model, shape, "any")
            return got[0] if got else None
        entries.append(g.pick(["linear(num_classes)", "linear(3)"]))
        return entries
    if form == "call":
        return g.pick(["linear(num_classes)", "linear(2)", "dropout(0.1)", "relu"])
    return ["linear(4)", "relu", "linear(num_classes)"]


def _transforms(g: _Gen, files: list) -> list:
    """Factorization rules that apply to at least one convolution of the spec."""
    if not g.literal_convs:
        return []
    square = [k for k in _conv_kernels(files) if isinstance(k, int)]
    options = []
    for k in square:
        if k >= 5 and k % 2:
            options += [{"factorize": "stack3x3"}, {"factorize": "stack3x3", "kernel": k}]
        if k > 1:
            options += [{"factorize": "asymmetric"}, {"factorize": "asymmetric", "kernel": k}]
    if not options:
        return []
    rule = g.pick(options)
    if rule["factorize"] == "stack3x3" and g.chance(30):  # a chain: the 3x3 pieces made asymmetric
        return [rule, {"factorize": "asymmetric", "kernel": 3}]
    return [rule]


def _conv_kernels(value) -> list:
    """The literal kernel sizes of every conv2d call in the data of some spec files."""
    import ast

    out = []
    if isinstance(value, dict):
        for v in value.values():
            out += _conv_kernels(v)
    elif isinstance(value, list):
        for v in value:
            out += _conv_kernels(v)
    elif isinstance(value, str) and value.startswith("conv2d("):
        call = ast.parse(value, mode="eval").body
        given = call.args[1] if len(call.args) > 1 else next(k.value for k in call.keywords if k.arg == "kernel_size")
        try:
            out.append(ast.literal_eval(given))
        except ValueError:  # a name: not a literal
            pass
    return out


def _variant(g: _Gen, model: _Owner, parent: dict, tops: list):
    """A spec that extends ``parent`` with edits that keep every shape."""
    refs = set()
    for head in (parent.get("aux") or {}).values():
        refs |= {head["from"], head.get("after")}
    edits = []
    touched = set()
    declared = len(model.args)
    for _ in range(g.d(st.integers(1, 3))):
        i, (ph, before, after, cond) = g.pick(list(enumerate(tops)))
        if ph is None or ph in refs or ph in touched or before is None:
            continue
        # a parent with transforms keeps its layers: removing its only convolution leaves nothing to rewrite
        kind = g.pick(["after", "before"] if parent.get("transforms") else ["remove", "replace", "after", "before"])
        if kind in ("remove", "replace") and tuple(before) != tuple(after):
            kind = "after"
        at = after if kind == "after" else before
        new, _ = g.items(model, at, "neutral", g.d(st.integers(1, 2)), 2)
        new = [n for n in new if not (isinstance(n, dict) and any(k in ("concat", "add", "mul") for k in n))]
        if kind == "remove":
            edits.append({"remove": ph})
        elif not new:
            continue
        elif kind == "replace":
            edits.append({"replace": ph, "with": new})
        else:
            edits.append({kind: ph, "insert": new if len(new) > 1 or g.chance(50) else new[0]})
        touched.add(ph)
    if not edits:
        return None
    g.features.add("edit")
    variant = {"archspec": 1, "extends": "parent.yaml", "name": g.name("model", set()), "edit": edits}
    args = {a.ph: g.arg_decl(a) for a in model.args[declared:]}  # arguments the edits introduced
    free = [a for a in model.args[:declared] if a.sampler is not None]
    if free and g.chance(50):
        a = g.pick(free)
        args[a.ph] = f"{a.type} = {_lit(a.sampler())}"
        g.features.add("argument override")
    if args:
        variant["args"] = args
    parent["name"] = g.name("model", set())
    return variant


# --- running one case --------------------------------------------------------------------------------

@dataclass
class Outcome:
    kind: str  # ok | refused | unlocated | internal | traceback | mismatch
    message: str = ""
    cls: str = ""  # for a mismatch: in-place | names | other
    case: Case | None = None

    def describe(self) -> str:
        """The outcome and the spec (with plain names when the problem is not about names)."""
        text = self.case.text(plain=self.cls in ("other", "valid spec")) if self.case is not None else ""
        return f"{self.kind} {self.cls}: {self.message}\n{text}"


def _write(case: Case, work: Path, plain: bool) -> Path:
    if work.exists():
        shutil.rmtree(work)
    for rel, text in case.render(plain).items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return work / case.sub(case.main, plain)


def _exec(source: str, filename: str) -> dict:
    namespace: dict = {"__name__": "_archspec_fuzz"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def _first(namespace: dict):
    return namespace[namespace["__all__"][0]]


def _build_and_verify(path: Path, inplace: bool = True) -> str | None:
    """None when the training and deploy modules pass build --verify; else the first message.
    Raises ArchspecError for a refusal, anything else for an internal error of archspec."""
    from archspec.deploy import generate_deploy
    from archspec.errors import ArchspecError, VerifyError
    from archspec.generate import generate
    from archspec.pipeline import compile_spec
    from archspec.verify import verify, verify_deploy

    c = compile_spec(str(path))
    sources = [("training", generate(c)), ("deploy", generate_deploy(c))]
    for what, source in sources:
        if not inplace:
            source = source.replace("inplace=True", "inplace=False")
        try:
            try:
                cls = _first(_exec(source, f"{c.name}_{what}.py"))
            except Exception as exc:  # noqa: BLE001 - the generated module is broken
                raise VerifyError(f"the generated module fails in import: {type(exc).__name__}: {exc}") from exc
            (verify if what == "training" else verify_deploy)(c, cls)
        except VerifyError as exc:
            return f"{what}: {exc.message}"
        except ArchspecError as exc:
            if getattr(exc, "stage", "") == "verify":
                return f"{what}: {exc.message}"
            raise
    return None


def check(case: Case, work: Path, classify: bool = True) -> Outcome:
    """Compile, generate, import and verify one case (see the module docstring)."""
    from archspec.errors import ArchspecError

    path = _write(case, work, plain=False)
    try:
        problem = _build_and_verify(path)
    except ArchspecError as exc:
        located = exc.loc is not None and exc.loc.line > 0
        cls, plain_message = _classify_refusal(case, work) if classify else ("", "")
        return _cli_outcome(case, path, work, Outcome("refused" if located else "unlocated",
                                                      plain_message or exc.message, cls, case))
    except Exception as exc:  # noqa: BLE001 - archspec itself failed
        return Outcome("internal", f"{type(exc).__name__}: {exc}", "", case)
    if problem is None:
        return Outcome("ok", "", "", case)
    if not classify:
        return Outcome("mismatch", problem, "", case)
    cls, residue = _classify(case, path, work)
    return Outcome("mismatch", residue if cls == "other" and residue else problem, cls, case)


def _classify(case: Case, path: Path, work: Path) -> tuple:
    """(class, message): 'in-place' when the module passes without in-place ops, 'names' when the
    plain-named spec passes, 'in-place+names' when it takes both, else 'other' with the message
    that remains with plain names and no in-place ops (the bug that is neither)."""
    from archspec.errors import ArchspecError

    plain = _write(case, work.with_name(work.name + "-plain"), plain=True)
    residue = ""
    try:
        if _build_and_verify(path, inplace=False) is None:
            return "in-place", ""
        if _build_and_verify(plain) is None:
            return "names", ""
        residue = _build_and_verify(plain, inplace=False)
        if residue is None:
            return "in-place+names", ""
    except ArchspecError as exc:
        return "names", f"with plain names: {exc.message}"
    except Exception as exc:  # noqa: BLE001
        return "other", f"with plain names: {type(exc).__name__}: {exc}"
    return "other", residue


def _classify_refusal(case: Case, work: Path) -> tuple:
    """'names' when the same network with plain names compiles: the refusal is about a name; else
    'valid spec' (every drawn spec is valid up to its names, so that is a refusal to look at)."""
    from archspec.deploy import generate_deploy
    from archspec.errors import ArchspecError
    from archspec.generate import generate
    from archspec.pipeline import compile_spec

    plain = _write(case, work.with_name(work.name + "-plain"), plain=True)
    try:
        c = compile_spec(str(plain))
        generate(c)
        generate_deploy(c)
    except ArchspecError as exc:
        return "valid spec", exc.message
    except Exception as exc:  # noqa: BLE001
        return "valid spec", f"{type(exc).__name__}: {exc}"
    return "names", ""


def _cli_outcome(case: Case, path: Path, work: Path, outcome: Outcome) -> Outcome:
    """A refusal through the command line: exit 1, one located message, no traceback, nothing written."""
    from archspec import cli

    out, err = io.StringIO(), io.StringIO()
    target = work / "out"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(["build", str(path), "-o", str(target)])
    except BaseException as exc:  # noqa: BLE001
        return Outcome("traceback", f"{type(exc).__name__}: {exc}", "", case)
    text = err.getvalue()
    if rc == 3 or "internal error" in text:
        return Outcome("internal", text.strip().splitlines()[0] if text.strip() else "exit 3", "", case)
    if "Traceback" in text or rc != 1 or target.exists():
        return Outcome("traceback" if "Traceback" in text else "internal",
                       f"exit {rc}, {'wrote files, ' if target.exists() else ''}{text[:200]}", "", case)
    return outcome


def message_class(message: str) -> str:
    """A refusal's message with names and numbers elided, to count refusals by message."""
    text = re.sub(r"'[^']*'", "'…'", message)
    return re.sub(r"\d+", "N", text)[:140]


__all__ = ["Case", "Outcome", "cases", "check", "message_class", "POOL"]
