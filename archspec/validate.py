"""Stage 2, validate: loaded data -> a typed ``Spec``.

The document's structure is checked by pydantic models (unknown fields forbidden); layer lists,
whose compact YAML forms do not suit tagged unions, are parsed here into small item classes. All
errors are collected and reported together, each at its own line and column.
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import exprs
from .errors import ArchspecError, ErrorList, Loc, SpecError, raise_all
from .load import LDict, LList, join_path, loc_of
from .ops import MERGES, OPS, USER_OPS

# Names with a meaning of their own where a layer name is expected (`input`: the network's input
# in the graph, draw and diff).
RESERVED = {"concat", "add", "mul", "if", "self", "forward", "training", "x", "input"}
ENTRY_NAME = exprs.ENTRY_NAME  # a named nn.Sequential entry's name (exprs.py says why)
# Keys that name a way of joining tensors but are no merge: with a list of branches they are an
# error (did you mean ...), not an nn.Sequential of that name.
MERGE_WORDS = {"cat": "concat", "concatenate": "concat", "stack": "concat", "sum": "add", "plus": "add",
               "residual": "add", "multiply": "mul", "mult": "mul", "prod": "mul", "product": "mul", "times": "mul",
               "gate": "mul", "max": None, "maximum": None, "min": None, "mean": None, "avg": None, "sub": None,
               "subtract": None, "div": None, "merge": None, "split": None, "chunk": None}


# --- the document -----------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, strict=True)


class AuxDef(_Model):
    """An auxiliary classifier: reads a named layer's output, trained with a weighted loss."""

    from_: str = Field(alias="from", description="top-level layer (or module path) whose output it reads")
    after: str | None = Field(None, description="top-level layer after which it is registered (default: from)")
    loss_weight: float = Field(description="weight of its cross-entropy in the training loss")
    module: Union[str, list] = Field(description="a block call, or a list of layers for an nn.Sequential")
    doc: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    @field_validator("loss_weight")
    @classmethod
    def _weight(cls, v):
        if not v >= 0:
            raise ValueError("loss_weight must be >= 0")
        return v


class Outputs(_Model):
    """What the model returns in training when it has aux heads: a namedtuple, named and ordered."""

    type: str | None = Field(None, description="the namedtuple's type name (default: the model class + 'Outputs')")
    fields: dict[str, str] | None = Field(
        None, description="field name -> `main` (the network's output) or an aux head's name, in order; every one "
                          "exactly once (default: logits: main, then one field per aux head, named after it)")

    @field_validator("type")
    @classmethod
    def _ident(cls, v):
        if v is not None and (not exprs.is_identifier(v) or v.startswith("_")):
            raise ValueError(f"'{v}' must be a Python identifier (letters, digits, _; not a keyword; not starting with _ or a digit)")
        return v


class Expect(_Model):
    """Totals that ``archspec check`` verifies."""

    params: int | None = Field(None, description="parameters in training (all parts)")
    params_eval: int | None = Field(None, description="parameters of the main network (aux heads removed)")
    buffers: int | None = None
    macs: int | None = Field(None, description="conv+linear multiply-adds at batch 1, eval")
    flops: int | None = None
    depth: int | None = None
    output: list[int] | None = Field(None, description="output shape without the batch dimension")


class BlockDef(_Model):
    """A reusable block: typed arguments and the layers it applies."""

    doc: str | None = None
    args: dict[str, Any] = Field(default_factory=dict, description="name: 'type' or 'type = default'")
    layers: list[Any]


class Transform(_Model):
    """A factorization rewrite applied to the validated spec before expansion (docs/transforms.md)."""

    factorize: Literal["stack3x3", "asymmetric"] = Field(
        description="stack3x3: kxk -> (k-1)/2 stacked 3x3 convs; asymmetric: nxn -> 1xn then nx1")
    kernel: int | None = Field(None, description="only square kernels of this size (default: every one the rule applies to)")
    unit: str | None = Field(None, description="conv unit block for the new convs, e.g. BasicConv2d to add BatchNorm "
                                               "(default: the same call as the original)")
    doc: str | None = None


class Spec(_Model):
    """One network."""

    archspec: Literal[1] = Field(description="spec language version")
    name: str = Field(description="network name; also the generated file's name (a Python identifier)")
    class_name: str | None = Field(None, description="class of the generated model (default: from name)")
    description: str | None = None
    input: list[int] = Field(description="input shape C x H x W")
    num_classes: int = 1000
    args: dict[str, Any] = Field(default_factory=dict)
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    layers: list[Any]
    aux: dict[str, AuxDef] = Field(default_factory=dict)
    outputs: Outputs | None = Field(None, description="the training-mode outputs of a spec with aux heads")
    transforms: list[Transform] = Field(default_factory=list)
    expect: Expect | None = None

    @field_validator("name", "class_name")
    @classmethod
    def _ident(cls, v):
        if v is not None and (not exprs.is_identifier(v) or v.startswith("_")):
            raise ValueError(f"'{v}' must be a Python identifier (letters, digits, _; not a keyword; not starting with _ or a digit)")
        return v

    @field_validator("input")
    @classmethod
    def _input(cls, v):
        if len(v) != 3 or any(d < 1 for d in v):
            raise ValueError("input must be three positive sizes [C, H, W]")
        return v

    @field_validator("num_classes")
    @classmethod
    def _classes(cls, v):
        if v < 1:
            raise ValueError("num_classes must be positive")
        return v

    @field_validator("archspec", mode="before")
    @classmethod
    def _version(cls, v):
        return v if type(v) is int else repr(v)  # `true` and `1.0` equal 1 in Python but are not version 1


# --- layer items ------------------------------------------------------------------------------

@dataclass
class CallItem:
    """``relu`` or ``avgpool2d(3, stride=1, padding=1)``: a function in a block, a module in a Sequential."""

    call: exprs.Call
    loc: Loc


@dataclass
class NamedItem:
    """``name: CALL`` (a module attribute) or ``name: [...]`` (an nn.Sequential). Inside a loop the
    name may be a template over the loop variables: ``"denselayer{i + 1}": DenseLayer(32)``."""

    name: str
    loc: Loc
    call: exprs.Call | None = None
    seq: list | None = None
    cond: ast.expr | None = None
    cond_loc: Loc | None = None  # where the if: value is
    template: tuple | None = None  # the name's parts: strings and expressions (``{i + 1}``)


@dataclass
class MergeItem:
    """``concat: [branch, ...]``, ``add: [...]`` or ``mul: [...]``; each branch is a list of items
    (empty: identity). With ``split:`` branch i reads chunk i of the input's channels."""

    kind: str
    branches: list
    loc: Loc
    split: ast.expr | None = None  # N (equal chunks) or a tuple of channel counts
    split_loc: Loc | None = None
    conds: list | None = None  # per branch: the condition of a conditional branch ({if: c, body: [...]}), or None


@dataclass
class RepeatItem:
    """``{repeat: N, body: [...]}``: the body N times, with the index in scope as ``as:`` names it
    (0, 1, ...). In an nn.Sequential its entries are numbered on; in a body its modules are
    attributes, named by templates over the index (``"layer{i + 1}"``)."""

    count: ast.expr
    body: list
    loc: Loc
    var: str | None = None  # the loop variable (as: i)


@dataclass
class ForItem:
    """``{for: [t, c, n, s], in: [[1, 16, 1, 1], ...], body: [...]}``: the body once per row of the
    table, the row's values bound to the names (MobileNet's stage table)."""

    names: tuple
    rows: list  # of tuples of expressions, one per name
    body: list
    loc: Loc


@dataclass
class GroupItem:
    """``{if: COND, body: [...]}``: the items when COND holds, nothing when it does not (in an
    nn.Sequential the later entries are then numbered one lower). ``if:`` on a merge, a repeat or a
    for is this group around the one item."""

    cond: ast.expr
    body: list
    loc: Loc
    cond_loc: Loc | None = None


@dataclass
class ArgDef:
    name: str
    type: str
    default: Any
    loc: Loc
    doc: str | None = None

    @property
    def required(self) -> bool:
        return self.default is exprs_required


exprs_required = object()


@dataclass
class Block:
    name: str
    args: list
    layers: list
    loc: Loc
    doc: str | None = None


@dataclass
class Aux:
    name: str
    source: str
    after: str
    loss_weight: float
    module: Any  # NamedItem whose name is the aux head's
    loc: Loc
    source_loc: Loc | None = None  # where the from: value is
    after_loc: Loc | None = None  # where the after: value is (or from:, when after is not given)


@dataclass
class Resolved:
    """A validated spec: the pydantic document plus parsed blocks, layers and aux heads."""

    spec: Spec
    file: str
    args: list
    blocks: dict
    layers: list
    aux: list
    data: Any = field(repr=False, default=None)
    outputs: list | None = None  # [(field, "main" or an aux head's name)] as the spec orders them; None: the default

    @property
    def name(self) -> str:
        return self.spec.name

    def output_fields(self) -> list:
        """The training outputs' fields in order: [(field, "main" or an aux head's name)]."""
        if self.outputs is not None:
            return self.outputs
        return [("logits", "main")] + [(a.name, a.name) for a in self.aux]


class _Items:
    """Parses layer lists, collecting errors."""

    def __init__(self, errors: list):
        self.errors = errors
        self.loop_vars: list = []  # the variables of the loops being parsed, innermost last
        self.bodies = 0  # how many repeat:, for: and if: bodies the list being parsed is inside

    def seq(self, raw, loc: Loc, sequential: bool) -> list:
        if not isinstance(raw, list):
            self.errors.append(SpecError("expected a list of layers", loc))
            return []
        out = []
        for i, item in enumerate(raw):
            at = loc_of(raw, i) or loc
            try:
                parsed = self.item(item, at, sequential)
            except ArchspecError as exc:
                self.errors.append(exc)
                continue
            if parsed is not None:
                out.append(parsed)
        if sequential:
            self.check_entries(out)
        return out

    def sequential(self, raw, loc: Loc) -> list:
        """The entries of an nn.Sequential list: its own, whatever bodies the list itself is in."""
        bodies, self.bodies = self.bodies, 0
        try:
            return self.seq(raw, loc, True)
        finally:
            self.bodies = bodies

    def check_entries(self, items: list) -> None:
        """An nn.Sequential's entries are all numbered or all named, and named ones are written
        out: each is a key of the OrderedDict the Sequential is built from."""
        named = [it for it in items if isinstance(it, NamedItem) and it.name]
        if not named:
            return
        if self.bodies:
            self.errors.append(SpecError(f"'{named[0].name}': a named nn.Sequential entry cannot be in the body of a "
                                         "repeat:, for: or if: (write each named entry out)", named[0].loc))
        elif len(named) != len(items):
            k = next(k for k, it in enumerate(items) if not (isinstance(it, NamedItem) and it.name))
            self.errors.append(SpecError(f"'{named[0].name}': the entries of an nn.Sequential are all numbered or "
                                         f"all named (the keys of an OrderedDict); entry {k + 1} (line "
                                         f"{getattr(items[k], 'loc', named[0].loc).line}) is not named",
                                         named[0].loc))

    def item(self, raw, loc: Loc, sequential: bool):
        if isinstance(raw, str):
            return CallItem(exprs.parse_call(raw, loc), loc)
        if isinstance(raw, list):
            if sequential:  # a nested Sequential at the next index
                return NamedItem("", loc, seq=self.sequential(raw, loc))
            raise SpecError("a list here needs a name: write {name: [...]} for an nn.Sequential", loc)
        if not isinstance(raw, dict):
            raise SpecError(f"expected a layer (a call, {{name: call}} or {{concat: [...]}}), got {exprs.describe(raw)}", loc)
        construct = self.construct(raw, loc, sequential)
        if construct is not None:
            if "if" in raw and not isinstance(construct, GroupItem):  # if: around a merge, repeat or for
                at = loc_of(raw, "if")
                return GroupItem(self.expr(raw["if"], at), [construct], loc, at)
            return construct
        self.not_a_merge(raw)
        return self.named(raw, loc, sequential)

    def construct(self, raw: dict, loc: Loc, sequential: bool):
        """A repeat, a for table, a merge or a conditional group (None: a named item)."""
        # `repeat` is the unrolling construct when it comes with `body`; alone it is a module name
        # (timm's Inception-ResNet-v2 calls its 35x35 stage `repeat`). Likewise `body` is a module
        # name unless it holds a list beside an `if:`.
        if "repeat" in raw and ("body" in raw or sequential):
            return self.repeat(raw, loc, sequential)
        if "for" in raw and "body" in raw:
            return self.table(raw, loc, sequential)
        for kind in MERGES:
            if kind in raw:
                return self.merge(raw, kind, loc)
        if "if" in raw and isinstance(raw.get("body"), list):
            extra = [k for k in raw if k not in ("if", "body")]
            if extra:
                raise SpecError(f"a conditional group is {{if: COND, body: [...]}}; '{extra[0]}' does not belong in it",
                                _key_loc(raw, extra[0]))
            at = loc_of(raw, "if")
            self.bodies += 1
            try:
                body = self.seq(raw["body"], loc_of(raw, "body"), sequential)
            finally:
                self.bodies -= 1
            return GroupItem(self.expr(raw["if"], at), body, loc, at)
        return None

    def not_a_merge(self, raw: dict) -> None:
        """The closed set of merges: a key that names a way of joining tensors (``sum``, ``cat``) or
        is close to a merge (``adds``), given a list with a list among its entries (branches; an
        nn.Sequential's entries are calls), is an unknown merge, not an nn.Sequential of that name."""
        for key, value in raw.items():
            if key == "if" or not isinstance(value, list) or not any(isinstance(v, list) for v in value):
                continue
            close = difflib.get_close_matches(key, MERGES, n=1, cutoff=0.75) if isinstance(key, str) else []
            if key in MERGE_WORDS or close:
                guess = MERGE_WORDS.get(key) or (close[0] if close else None)
                hint = f"; did you mean '{guess}'?" if guess else ""
                raise SpecError(f"unknown merge '{key}' (merges: {', '.join(MERGES)}){hint} An nn.Sequential's "
                                "entries are calls: a list of branches needs a merge", _key_loc(raw, key))

    def repeat(self, raw: dict, loc: Loc, sequential: bool) -> RepeatItem:
        extra = [k for k in raw if k not in ("repeat", "body", "as", "if")]
        if extra or "body" not in raw:
            raise SpecError("repeat needs {repeat: N, body: [...]} (and optionally as: a name for the index, if:)",
                            _key_loc(raw, extra[0]) if extra else loc)
        count = self.expr(raw["repeat"], loc_of(raw, "repeat"))
        var = None
        if "as" in raw:
            var = raw["as"]
            self.check_variable(var, loc_of(raw, "as"))
        return RepeatItem(count, self.loop_body(raw, (var,) if var else (), sequential), loc, var)

    def table(self, raw: dict, loc: Loc, sequential: bool) -> ForItem:
        """``for: [t, c, n, s]``, ``in:`` the rows, ``body:`` the items (``if:`` beside them)."""
        extra = [k for k in raw if k not in ("for", "in", "body", "if")]
        if extra or "in" not in raw:
            raise SpecError("a table loop is {for: [names], in: [[row], ...], body: [...]}",
                            _key_loc(raw, extra[0]) if extra else loc)
        names = raw["for"] if isinstance(raw["for"], list) else [raw["for"]]
        at = loc_of(raw, "for")
        for name in names:
            self.check_variable(name, at)
        if len(set(names)) != len(names):
            raise SpecError("for: names a variable twice", at)
        rows_raw, rows_at = raw["in"], loc_of(raw, "in")
        if not isinstance(rows_raw, list):
            raise SpecError(f"in: must be a list of rows, got {exprs.describe(rows_raw)}", rows_at)
        rows = [self.row(row, names, loc_of(rows_raw, j) or rows_at) for j, row in enumerate(rows_raw)]
        return ForItem(tuple(names), rows, self.loop_body(raw, tuple(names), sequential), loc)

    def row(self, row, names: list, at: Loc) -> tuple:
        """One row of a for: table: one expression per name (a single name may take a bare value)."""
        cells = row if isinstance(row, list) and (len(names) > 1 or (row and isinstance(row[0], list))) else [row]
        if len(cells) != len(names):
            raise SpecError(f"this row has {len(cells)} value{'s' if len(cells) != 1 else ''}, the table "
                            f"{len(names)} ({', '.join(names)})", at)
        return tuple(self.expr(f"({', '.join(map(str, c))},)" if isinstance(c, list) else c, at) for c in cells)

    def loop_body(self, raw: dict, variables: tuple, sequential: bool) -> list:
        self.loop_vars.append(variables)
        self.bodies += 1
        try:
            return self.seq(raw["body"], loc_of(raw, "body"), sequential)
        finally:
            self.loop_vars.pop()
            self.bodies -= 1

    def check_variable(self, name, loc: Loc) -> None:
        """A loop variable: a name that is no argument's of the language's own."""
        if not isinstance(name, str):
            raise SpecError(f"a loop variable must be a name, got {exprs.describe(name)}", loc)
        self.check_name(name, loc)
        if name in ("in_channels", "in_h", "in_w", "num_classes"):
            raise SpecError(f"'{name}' is in scope already and cannot be a loop variable", loc)

    def merge(self, raw: dict, kind: str, loc: Loc) -> MergeItem:
        others = [k for k in raw if k not in (kind, "split", "if")]
        if others:
            raise SpecError(f"'{kind}' cannot be combined with '{others[0]}' in one item", _key_loc(raw, others[0]))
        split = None
        if "split" in raw:  # [16, 32] as YAML writes it is the tuple (16, 32)
            value = raw["split"]
            value = f"({', '.join(map(str, value))},)" if isinstance(value, list) and value else value
            split = self.expr(value, loc_of(raw, "split"))
        branches_raw = raw[kind]
        at = loc_of(raw, kind)
        if not isinstance(branches_raw, list) or len(branches_raw) < 2:
            raise SpecError(f"{kind} needs a list of at least two branches", at)
        branches, conds = [], []
        for j, br in enumerate(branches_raw):
            branch, cond = self.branch(br, loc_of(branches_raw, j) or at)
            branches.append(branch)
            conds.append(cond)
        if sum(c is not None for c in conds) > 1:
            raise SpecError(f"{kind} has {sum(c is not None for c in conds)} conditional branches; one is allowed "
                            "(write the others' conditions into a block, or nest the merges)", at)
        if split is not None and any(c is not None for c in conds):
            raise SpecError("split: gives every branch its chunk; a conditional branch cannot have one", at)
        return MergeItem(kind, branches, loc, split, loc_of(raw, "split") if split is not None else None,
                         conds if any(c is not None for c in conds) else None)

    def branch(self, raw, at: Loc) -> tuple:
        """(items, condition) of a merge's branch: a list, one item, or {if: COND, body: [...]} (a
        conditional branch, there only when COND holds)."""
        cond = None
        if isinstance(raw, dict) and "if" in raw and isinstance(raw.get("body"), list) and len(raw) == 2:
            cond = self.expr(raw["if"], loc_of(raw, "if"))
            raw, at = raw["body"], loc_of(raw, "body") or at
        if isinstance(raw, list):
            return self.seq(raw, at, False), cond
        try:
            return [self.item(raw, at, False)], cond
        except ArchspecError as exc:
            self.errors.append(exc)
            return [], cond

    def named(self, raw: dict, loc: Loc, sequential: bool) -> NamedItem:
        """``name: call`` or ``name: [...]``, with an optional ``if:``."""
        cond = None
        names = [k for k in raw if k != "if"]
        cond_loc = loc_of(raw, "if") if "if" in raw else None
        if cond_loc is not None:
            cond = self.expr(raw["if"], cond_loc)
        if len(names) != 1:
            if not names:
                raise SpecError("a layer mapping needs a name: {name: call}", loc)
            raise SpecError(f"one layer per list item: found {', '.join(names)} (write each as its own '- name: ...')", _key_loc(raw, names[1]))
        name = names[0]
        name_loc = _key_loc(raw, name)
        if sequential:
            self.check_entry_name(name, name_loc)
            if cond is not None:
                raise SpecError(f"'{name}': a named nn.Sequential entry cannot have if: (every key of its "
                                "OrderedDict is there)", cond_loc)
        template = self.template(name, name_loc) if isinstance(name, str) and "{" in name and not sequential else None
        if template is None and not sequential:
            self.check_name(name, name_loc)
        value = raw[name]
        vloc = loc_of(raw, name) or loc
        if isinstance(value, str):
            return NamedItem(name, name_loc, call=exprs.parse_call(value, vloc), cond=cond, cond_loc=cond_loc,
                             template=template)
        if isinstance(value, list):
            return NamedItem(name, name_loc, seq=self.sequential(value, vloc), cond=cond, cond_loc=cond_loc,
                             template=template)
        raise SpecError(f"'{name}' must be a call or a list of layers, got {exprs.describe(value)}", vloc)

    def template(self, name: str, loc: Loc) -> tuple:
        """A name with ``{expression}`` parts, inside a loop: ("denselayer", <i + 1>)."""
        if not self.loop_vars:
            raise SpecError(f"'{name}': a name with {{...}} is a template over a loop variable; it belongs in the "
                            "body of a repeat: (with as:) or a for: table", loc)
        parts, rest = [], name
        while rest:
            head, brace, tail = rest.partition("{")
            if head:
                parts.append(head)
            if not brace:
                break
            inner, close, rest = tail.partition("}")
            if not close or "{" in inner:
                raise SpecError(f"'{name}': unbalanced {{ }} in a name template", loc)
            parts.append(exprs.parse_expr(inner, loc))
        if "}" in "".join(p for p in parts if isinstance(p, str)):
            raise SpecError(f"'{name}': unbalanced {{ }} in a name template", loc)
        return tuple(parts)

    def check_name(self, name, loc: Loc) -> None:
        if not exprs.is_identifier(name):
            where = ("; such a name may name only an entry of an nn.Sequential whose entries are named"
                     if isinstance(name, str) and ENTRY_NAME.match(name) else "")
            raise SpecError(f"'{name}' is not a valid module name (letters, digits and _, not starting with a digit, "
                            f"not a Python keyword){where}", loc)
        if name.startswith("__"):
            raise SpecError(f"'{name}': names starting with '__' are reserved", loc)
        if name in RESERVED:
            raise SpecError(f"'{name}' is a reserved word and cannot name a module", loc)

    def check_entry_name(self, name, loc: Loc) -> None:
        """A named nn.Sequential entry: an identifier as a module name is, or ``ENTRY_NAME``."""
        if not isinstance(name, str):
            raise SpecError(f"'{name}': an nn.Sequential entry's name must be a string (quote it in YAML)", loc)
        if not name:
            raise SpecError("a module name cannot be empty (PyTorch's add_module refuses '')", loc)
        if "." in name:
            raise SpecError(f"'{name}': a module name cannot contain '.' (PyTorch's add_module refuses it: "
                            "'.' separates the parts of a module path)", loc)
        if "{" in name:
            raise SpecError(f"'{name}': a named nn.Sequential entry's name is written out, not a template", loc)
        if not ENTRY_NAME.match(name):
            raise SpecError(f"'{name}' is not a valid nn.Sequential entry name (letters, digits, _ and -)", loc)
        if exprs.is_identifier(name) or name.startswith("__"):
            self.check_name(name, loc)

    def expr(self, raw, loc: Loc) -> ast.expr:
        if isinstance(raw, bool):
            return ast.Constant(raw)
        if isinstance(raw, (int, float)):
            return ast.Constant(raw)
        if isinstance(raw, str):
            return exprs.parse_expr(raw, loc)
        raise SpecError(f"expected a number, a boolean or an expression, got {exprs.describe(raw)}", loc)


def expressions(items: list):
    """Every expression a list of layer items writes, nested items included: call arguments,
    conditions, counts, split sizes."""
    for item in items:
        if isinstance(item, CallItem):
            yield from _call_exprs(item.call)
        elif isinstance(item, NamedItem):
            if item.cond is not None:
                yield item.cond
            if item.call is not None:
                yield from _call_exprs(item.call)
            else:
                yield from expressions(item.seq)
            if item.template is not None:
                yield from (p for p in item.template if not isinstance(p, str))
        elif isinstance(item, MergeItem):
            if item.split is not None:
                yield item.split
            yield from (c for c in item.conds or () if c is not None)
            for branch in item.branches:
                yield from expressions(branch)
        elif isinstance(item, RepeatItem):
            yield item.count
            yield from expressions(item.body)
        elif isinstance(item, ForItem):
            yield from (cell for row in item.rows for cell in row)
            yield from expressions(item.body)
        elif isinstance(item, GroupItem):
            yield item.cond
            yield from expressions(item.body)


def _call_exprs(call: exprs.Call):
    yield from call.args
    yield from (v for _, v in call.kwargs)


def spec_expressions(resolved: "Resolved"):
    """Every expression of a validated spec: its blocks', layers' and aux heads'."""
    for block in resolved.blocks.values():
        yield from expressions(block.layers)
    yield from expressions(resolved.layers)
    yield from expressions([a.module for a in resolved.aux])


def _key_loc(raw, key) -> Loc:
    return raw.loc_of(key, value=False) if isinstance(raw, LDict) else getattr(raw, "loc", Loc("?"))


def parse_args(raw: dict, where: Loc, errors: list, owner: str) -> list:
    """``{out: int, s: size = 1, p: {type: size, default: 0, doc: ...}}`` -> [ArgDef]."""
    out = []
    items = _Items(errors)
    for name, value in raw.items():
        at = raw.loc_of(name, value=False) if isinstance(raw, LDict) else where
        vat = loc_of(raw, name) or where
        try:
            items.check_name(name, at)
            if name in ("in_channels", "in_h", "in_w"):
                raise SpecError(f"'{name}' is the size of a block's input and cannot be declared", at)
            type_, default, doc = _declaration(name, value, items, vat)
            if type_ == "op":
                _op_argument(name, at)
                if default is not exprs_required:
                    default = op_value(default, vat, f"the default of '{name}'")
            if default is not exprs_required:
                checked = exprs.check_type(default, type_)
                if checked is None:
                    raise SpecError(f"default of '{name}' must be {exprs.TYPE_WORDS[type_]}, got {exprs.describe(default)}", vat)
                default = checked
            out.append(ArgDef(name, type_, default, at, doc))
        except ArchspecError as exc:
            errors.append(exc)
    return out


def _declaration(name: str, value, items: "_Items", vat: Loc) -> tuple:
    """(type, default or exprs_required, doc) of one argument as written: ``'size = 1'`` or the long
    form ``{type, default, doc}``; an op argument's default is kept as written (its text, an op)."""
    doc = None
    if isinstance(value, dict):
        unknown = [k for k in value if k not in ("type", "default", "doc")]
        if unknown:
            raise SpecError(f"unknown field '{unknown[0]}' in argument '{name}' (expected type, default, doc)", _key_loc(value, unknown[0]))
        type_, doc = value.get("type"), value.get("doc")
        default = value["default"] if "default" in value else exprs_required
        if default is not exprs_required and isinstance(default, list):
            default = tuple(default)
    elif isinstance(value, str):
        type_, _, dflt = value.partition("=")
        type_ = type_.strip()
        default = exprs_required
        if dflt.strip() and type_ == "op":
            default = dflt.strip()
        elif dflt.strip():
            default = exprs.evaluate(items.expr(dflt.strip(), vat), {}, vat, f" in the default of '{name}'")
    else:
        raise SpecError(f"argument '{name}' needs a type such as 'int' or 'size = 1', got {exprs.describe(value)}", vat)
    if type_ not in exprs.TYPES:
        raise SpecError(f"argument '{name}' has unknown type '{type_}' (expected one of {', '.join(exprs.TYPES)})", vat)
    return type_, default, doc


def _op_argument(name: str, at: Loc) -> None:
    if name in _OP_NAMES:
        raise SpecError(f"argument '{name}' of type op has the name of a built-in op: '- {name}' would be ambiguous; "
                        f"name it after its role (act, norm)", at)


def op_value(raw, at: Loc, what: str) -> "exprs.OpValue":
    """An op written as a value (``relu``, ``leaky_relu(0.2)``): an op with a module form that keeps
    the channels (an activation, a norm, dropout, pooling), its attributes constants."""
    if isinstance(raw, exprs.OpValue):
        return raw
    call = exprs.parse_call(raw, at)
    values = [exprs.evaluate(e, {}, at, f" in {what}") for e in call.args]
    kwargs = tuple((k, exprs.evaluate(e, {}, at, f" in {what}")) for k, e in call.kwargs)
    value = exprs.OpValue(call.name, tuple(values), kwargs)
    problem = op_value_problem(call.name)
    if problem:
        raise SpecError(f"{what}: {problem}", at)
    return value


def op_value_problem(name: str) -> str | None:
    """Why an op cannot be the value of an argument of type op (None: it can)."""
    op = OPS.get(name)
    if op is None or name not in USER_OPS:
        close = difflib.get_close_matches(name, sorted(OP_VALUES), n=1, cutoff=0.8)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"'{name}' is not an op (ops an argument may take: {', '.join(sorted(OP_VALUES))}){hint}"
    if name not in OP_VALUES:
        return (f"'{name}' cannot be an argument's op: an argument of type op takes a module that keeps the channels "
                f"(an activation, a norm, dropout, pooling: {', '.join(sorted(OP_VALUES))})")
    return None


# --- pydantic errors -> located errors --------------------------------------------------------

def _pydantic_errors(exc: ValidationError, data, file: str) -> list:
    out = []
    for err in exc.errors():
        node, loc, path = data, getattr(data, "loc", Loc(file, 1, 1)), ""
        key_loc = None
        for part in err["loc"]:
            if isinstance(node, dict) and part in node:
                key_loc = node.loc_of(part, value=False) if isinstance(node, LDict) else None
                loc = loc_of(node, part) or loc
                node = node[part]
                path = join_path(path, part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                loc = loc_of(node, part) or loc
                node = node[part]
                path = join_path(path, part)
                key_loc = None
            elif part == "from_" and isinstance(node, dict) and "from" in node:
                loc = loc_of(node, "from") or loc
                node = node["from"]
            else:
                # the remaining parts name a missing or union member: stay at the last real node
                continue
        out.append(SpecError(_message(err, path), (key_loc if err["type"] == "extra_forbidden" and key_loc else loc).at(path)))
    return out


def _message(err: dict, path: str) -> str:
    kind = err["type"]
    field_ = path.rsplit(".", 1)[-1] if path else "spec"
    if kind == "extra_forbidden":
        return f"unknown field '{field_}'"
    if kind == "missing":
        last = [p for p in err["loc"] if isinstance(p, str)]
        name = last[-1] if last else field_
        return f"missing required field '{'from' if name == 'from_' else name}'"
    if kind == "literal_error" and field_ == "archspec":
        return "unsupported spec version: expected 'archspec: 1'"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    given = err.get("input")
    if msg.startswith("Input should be "):  # pydantic's "Input" is the value, which reads oddly for the input field
        msg = "should be " + msg[len("Input should be "):]
    if kind in ("int_type", "int_parsing", "float_type", "float_parsing", "string_type", "bool_type", "list_type",
                "dict_type", "model_type", "int_from_float", "bool_parsing"):
        return f"'{field_}': {msg.lower()}, got {exprs.describe(given) if not isinstance(given, (dict, list)) else exprs._show(given)}"
    return f"'{field_}': {msg}"


def validate(data, file: str) -> Resolved:
    """Check a loaded document and parse its layers; every error is reported at once."""
    errors: list = []
    if isinstance(data, dict) and "blocks" in data and set(data) <= {"archspec", "description", "use", "blocks"}:
        # what a use: file holds; its three missing fields would not say what is wrong
        raise SpecError("this is a library file (blocks only, no name, input or layers): a spec reads it with use:, "
                        "so check a spec that uses it", getattr(data, "loc", None) or Loc(file, 1, 1))
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc, data, file))
        spec = None
    items = _Items(errors)
    doc = data if isinstance(data, dict) else {}
    blocks = _blocks(doc.get("blocks"), items, file)
    model_args = _model_args(doc, errors) if isinstance(doc.get("args"), dict) else []
    layers = items.seq(doc["layers"], loc_of(doc, "layers"), False) if isinstance(doc.get("layers"), list) else []
    aux = _aux_heads(doc.get("aux"), items, file) if isinstance(doc.get("aux"), dict) else []
    outputs = None
    if isinstance(doc.get("outputs"), dict):
        outputs = _outputs(doc, [a.name for a in aux], errors, file)
    raise_all(errors)
    return Resolved(spec, file, model_args, blocks, layers, aux, data, outputs)


def _outputs(data, heads: list, errors: list, file: str) -> list | None:
    """``outputs.fields`` as [(field, source)], every error collected (the types are pydantic's)."""
    raw = data["outputs"]
    if not heads:
        errors.append(SpecError("outputs: this spec has no aux heads, so its model returns the output tensor in "
                                "training as in eval (remove outputs:, or set outputs: null in a variant)",
                                _key_loc(data, "outputs").at("outputs")))
        return None
    fields = raw.get("fields")
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        return None  # default fields, or a type error that pydantic reports
    out, seen = [], {}
    for name, source in fields.items():
        at = _key_loc(fields, name).at(f"outputs.fields.{name}")
        vat = (loc_of(fields, name) or at).at(f"outputs.fields.{name}")
        if not exprs.is_identifier(name) or name.startswith("_"):
            errors.append(SpecError(f"output field '{name}' must be a Python identifier, not a keyword and not starting with _", at))
        elif name in ("count", "index"):
            errors.append(SpecError(f"output field '{name}' would hide the tuple method of that name", at))
        if source != "main" and source not in heads:
            errors.append(SpecError(f"'{source}' is neither main nor an aux head (aux heads: {', '.join(heads)})", vat))
        elif source in seen:
            errors.append(SpecError(f"'{source}' is already the field '{seen[source]}'", vat))
        seen[source] = name
        out.append((name, source))
    missing = [s for s in ["main", *heads] if s not in seen]
    if missing:
        errors.append(SpecError(f"outputs.fields must give main and every aux head a field; missing: {', '.join(missing)}",
                                (loc_of(raw, "fields") or Loc(file)).at("outputs.fields")))
    return out


def _blocks(raw, items: _Items, file: str) -> dict:
    """The block definitions (their structure is checked by pydantic; names and layers here)."""
    blocks: dict = {}
    if not isinstance(raw, dict):
        return blocks
    for name, body in raw.items():
        at = raw.loc_of(name, value=False) if isinstance(raw, LDict) else Loc(file)
        if not isinstance(body, dict):
            continue  # reported by pydantic
        try:
            items.check_name(name, at)
            if name in _OP_NAMES:
                raise SpecError(f"block '{name}' has the name of a built-in op", at)
        except ArchspecError as exc:
            items.errors.append(exc)
            continue
        args = parse_args(body.get("args") or {}, at, items.errors, name) if isinstance(body.get("args") or {}, dict) else []
        layers = items.seq(body.get("layers", []), loc_of(body, "layers") or at, False) if "layers" in body else []
        blocks[name] = Block(name, args, layers, at, body.get("doc") if isinstance(body.get("doc"), str) else None)
    return blocks


def _model_args(doc: dict, errors: list) -> list:
    """The model's own arguments: each needs a default, and num_classes has its own field."""
    model_args = parse_args(doc["args"], loc_of(doc, "args"), errors, "model")
    for a in model_args:
        if a.name == "num_classes":
            errors.append(SpecError("'num_classes' is set by the top-level num_classes field", a.loc))
        elif a.default is exprs_required:
            errors.append(SpecError(f"model argument '{a.name}' needs a default", a.loc))
    return model_args


def _aux_heads(raw_aux: dict, items: _Items, file: str) -> list:
    """The aux heads: a module each (a call or a list), the layer it reads and its loss weight."""
    aux = []
    for name, body in raw_aux.items():
        at = raw_aux.loc_of(name, value=False) if isinstance(raw_aux, LDict) else Loc(file)
        if not isinstance(body, dict) or "module" not in body or "from" not in body:
            continue  # reported by pydantic
        try:
            items.check_name(name, at)
            if name == "main":
                raise SpecError("'main' names the main network (its part, and its output in outputs:); "
                                "an aux head needs another name", at)
            module = items.item({name: body["module"]}, at, False) if not isinstance(body["module"], (dict,)) else None
            if module is None:
                raise SpecError("aux module must be a call or a list of layers", loc_of(body, "module"))
            module.loc = at
            source = body["from"]
            after = body.get("after", source)
            if not isinstance(source, str):
                continue
            weight = body.get("loss_weight", 0.0)
            aux.append(Aux(name, source, after if isinstance(after, str) else source,
                           float(weight) if isinstance(weight, (int, float)) and not isinstance(weight, bool) else 0.0,
                           module, at, loc_of(body, "from"), loc_of(body, "after" if "after" in body else "from")))
        except ArchspecError as exc:
            items.errors.append(exc)
    return aux


_OP_NAMES = set(OPS)
# The ops an argument of type op may take: a module form, the channels kept (so that a class can
# track them whatever op it is given), not a parameter of its owner.
OP_VALUES = {name for name in USER_OPS if OPS[name].module is not None and OPS[name].out_attr is None
             and not OPS[name].opaque_out and not OPS[name].parameter}
