"""schema: the JSON Schema of the spec language, for editors and for checking files without archspec.

The document's structure comes from the pydantic models in ``validate.py``
(``Spec.model_json_schema()``). What pydantic sees as free-form (layer lists, argument
declarations, aux modules) is parsed by hand in ``validate.py``; this module describes those
parts too, so that an editor's YAML language server can complete and check them:

* a layer: a call string (``relu``, ``conv2d(64, 3, stride=2)``), ``{name: call}``,
  ``{name: [...]}`` (an nn.Sequential), optionally with ``if:``, or ``{concat|add|mul: [branch, ...]}``
  (optionally with ``split:``);
* inside an nn.Sequential: calls, nested lists, ``{repeat: N, body: [...]}`` and groups;
* loops (``repeat:`` with ``as:``, ``for:`` tables) and conditional groups ``{if: c, body: [...]}``;
* an argument: ``"int"``, ``"size = 1"`` or ``{type, default, doc}``;
* the keys that ``load`` resolves before validation: ``use``, ``extends`` and ``edit``.

A file is a network (``name``, ``input``, ``layers``), a variant (``extends:``) or a library
(only ``archspec``, ``description``, ``use`` and ``blocks``). The schema accepts what archspec accepts in
form; values (shapes, names of blocks) are still checked by ``archspec check``.
"""
from __future__ import annotations

import copy
import json

from .ops import MERGES, OPS, USER_OPS

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TYPES = ["int", "float", "bool", "size", "number", "op"]
# A module name, or inside a loop a template over its variables ("denselayer{i + 1}").
NAME_OR_TEMPLATE = r"^([A-Za-z_]|\{[^{}]+\})([A-Za-z0-9_]|\{[^{}]+\})*$"
# A named nn.Sequential entry: letters, digits, _ and - (RegNet's block1-0; validate.ENTRY_NAME).
ENTRY = r"^[A-Za-z0-9_-]+$"
_REF = "#/$defs/"


_EXPR_DOC = ("a number, a boolean, or an expression over arguments such as 'ch // 2', 't != 1 and stride == 1', "
             "'a if c else b', 'make_divisible(c * width, 8)' (functions: min, max, round, int, ceil, floor, "
             "make_divisible)")


def _ref(name: str) -> dict:
    return {"$ref": _REF + name}


def _calls_doc() -> str:
    ops = ", ".join(f"{name}({', '.join(a.name for a in OPS[name].attrs)})" if OPS[name].attrs else name
                    for name in USER_OPS)
    return f"An op or block call, e.g. relu, conv2d(64, 3, stride=2), BasicConv2d(out, kernel_size=1). Ops: {ops}."


def _defs() -> dict:
    return {**_layer_defs(), **_entry_def(), **_construct_defs(), **_other_defs()}


def _entry_def() -> dict:
    """A named nn.Sequential entry (RegNet's block1-0)."""
    return {
        "Entry": {
            "type": "object",
            "description": "a named nn.Sequential entry, a key of the OrderedDict it is built from: its name may "
                           "also be letters, digits, _ and - that are no identifier (RegNet's block1-0)",
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {"pattern": ENTRY, "not": {"enum": [*MERGES, "body", "repeat", "for", "if"]}},
            "additionalProperties": {"anyOf": [_ref("Call"), {"type": "array", "items": _ref("SeqItem")}]},
        },
    }


def _layer_defs() -> dict:
    """A layer and what it is made of: calls, expressions, named modules, merges, repeats."""
    layers = {"type": "array", "items": _ref("Layer")}
    return {
        "Call": {
            "type": "string",
            "pattern": r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*(\(.*\))?\s*$",
            "description": _calls_doc(),
            "examples": ["relu", "conv2d(64, 3, padding=1)", "maxpool2d(3, stride=2, ceil_mode=true)",
                         "BasicConv2d(64, kernel_size=1)"],
        },
        "Expr": {
            "description": _EXPR_DOC,
            "anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}],
        },
        "Layer": {
            "description": "a call, {name: call}, {name: [...]} (an nn.Sequential), {concat|add|mul: [branch, ...]}, "
                           "a group {if: c, body: [...]} or a loop (repeat:, for:)",
            "anyOf": [_ref("Call"), _ref("Merge"), _ref("Group"), _ref("Repeat"), _ref("For"), _ref("Named")],
        },
        "Named": {
            "type": "object",
            "description": "name: call (a module attribute) or name: [...] (an nn.Sequential); "
                           "if: makes it conditional",
            "minProperties": 1,
            "maxProperties": 2,
            "anyOf": [{"maxProperties": 1}, {"required": ["if"]}],
            "properties": {"if": {**_ref("Expr"), "description": "the module exists only when this is true"}},
            "propertyNames": {"pattern": NAME_OR_TEMPLATE, "not": {"enum": [*MERGES, "body"]}},
            "additionalProperties": {"anyOf": [_ref("Call"), {"type": "array", "items": _ref("SeqItem")}]},
        },
        "Merge": {
            "type": "object",
            "description": "parallel branches from the same input, joined by concat (channels), add or mul "
                           "(broadcasting); with split: branch i reads chunk i of the input's channels",
            "minProperties": 1,
            "maxProperties": 3,
            "oneOf": [{"required": [kind]} for kind in MERGES],
            "properties": {**{kind: _ref("Branches") for kind in MERGES},
                           "split": {**_ref("Expr"), "description": "N equal chunks, or a tuple of channel counts"},
                           "if": {**_ref("Expr"), "description": "the merge is there only when this is true"}},
            "additionalProperties": False,
        },
        "Branches": {
            "type": "array",
            "minItems": 2,
            "description": "each branch is a list of layers (an empty list is the identity), a single layer, or "
                           "{if: c, body: [...]}: a branch there only when c holds (one per merge)",
            "items": {"anyOf": [layers, _ref("Group"), _ref("Layer")]},
        },
        "SeqItem": {
            "description": "inside an nn.Sequential: a call, a nested list, a loop or a group (numbered entries), "
                           "or {name: call} / {name: [...]} (named entries: all of a Sequential's or none)",
            "anyOf": [_ref("Call"), {"type": "array", "items": _ref("SeqItem")}, _ref("Repeat"), _ref("For"),
                      _ref("Group"), _ref("Entry")],
        },
    }


def _construct_defs() -> dict:
    """Loops and conditional groups, in a body or an nn.Sequential."""
    body = {"type": "array", "items": {"anyOf": [_ref("Layer"), _ref("SeqItem")]}}
    cond = {**_ref("Expr"), "description": "the item is there only when this is true"}
    return {
        "Repeat": {
            "type": "object",
            "description": "the body, N times; as: names the index (0, 1, ...), in scope in the body and its "
                           "names' templates (\"layer{i + 1}\")",
            "required": ["repeat", "body"],
            "additionalProperties": False,
            "properties": {"repeat": _ref("Expr"), "as": {"type": "string", "pattern": IDENT}, "if": cond,
                           "body": body},
        },
        "For": {
            "type": "object",
            "description": "the body once per row of a table, the row's values bound to the names",
            "required": ["for", "in", "body"],
            "additionalProperties": False,
            "properties": {
                "for": {"anyOf": [{"type": "string", "pattern": IDENT},
                                  {"type": "array", "items": {"type": "string", "pattern": IDENT}}]},
                "in": {"type": "array", "description": "rows: one value or expression per name",
                       "items": {"anyOf": [{"type": "array"}, _ref("Expr")]}},
                "if": cond, "body": body},
        },
        "Group": {
            "type": "object",
            "description": "the items when the condition holds, nothing when it does not",
            "required": ["if", "body"],
            "additionalProperties": False,
            "properties": {"if": cond, "body": body},
        },
    }


def _other_defs() -> dict:
    """Argument declarations and the edits of a variant (extends:)."""
    layers = {"type": "array", "items": _ref("Layer")}
    return {
        "Args": {
            "type": "object",
            "description": "arguments: name: 'type' or 'type = default', or {type, default, doc}",
            "propertyNames": {"pattern": IDENT},
            "additionalProperties": {"anyOf": [_ref("ArgDecl"), {"type": "null"}]},
        },
        "ArgDecl": {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(" + "|".join(_TYPES) + r")\s*(=.*)?$",
                 "examples": ["int", "size = 1", "float = 0.2", "op = relu"]},
                {"type": "object", "required": ["type"], "additionalProperties": False,
                 "properties": {"type": {"enum": _TYPES}, "default": {}, "doc": {"type": "string"}}},
            ],
        },
        "Edit": {
            "description": "a change to the parent's top-level layers (extends:)",
            "anyOf": [
                _edit({"replace": {"type": "string"}, "with": _ref("LayerOrList")}, ["replace", "with"]),
                _edit({"remove": {"type": "string"}}, ["remove"]),
                _edit({"after": {"type": "string"}, "insert": _ref("LayerOrList")}, ["after", "insert"]),
                _edit({"before": {"type": "string"}, "insert": _ref("LayerOrList")}, ["before", "insert"]),
            ],
        },
        "LayerOrList": {"anyOf": [layers, _ref("Layer")]},
    }


def _edit(properties: dict, required: list) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def schema() -> dict:
    """The JSON Schema (draft 2020-12) of a spec file.

    >>> s = schema()
    >>> s["$defs"]["Layer"]["anyOf"][0]
    {'$ref': '#/$defs/Call'}
    """
    from .validate import Spec

    s = copy.deepcopy(Spec.model_json_schema())
    defs = s.setdefault("$defs", {})
    defs.update(_defs())
    props = s["properties"]
    props["layers"]["items"] = _ref("Layer")
    props["args"] = {**_ref("Args"), "description": "model arguments (each with a default), usable in layers"}
    props["input"].update(minItems=3, maxItems=3)
    props["blocks"]["propertyNames"] = {"pattern": IDENT}
    props["blocks"]["additionalProperties"] = {"anyOf": [_ref("BlockDef"), {"type": "null"}]}
    props["aux"]["additionalProperties"] = {"anyOf": [_ref("AuxDef"), {"type": "null"}]}
    block = defs["BlockDef"]["properties"]
    block["layers"]["items"] = _ref("Layer")
    block["args"] = _ref("Args")
    defs["AuxDef"]["properties"]["module"] = {
        "description": "a block call, or a list of layers for an nn.Sequential",
        "anyOf": [_ref("Call"), {"type": "array", "items": _ref("SeqItem")}],
    }
    # Resolved by load before validation.
    props["use"] = {"description": "library files whose blocks this spec uses (paths relative to it, or stock:PATH "
                                   "for a stock library: stock:lib/basic.yaml)",
                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    props["extends"] = {"type": "string", "description": "a parent spec: this file overrides its fields (a variant); "
                                                         "a path, stock:PATH or a stock spec's name (inception_v3)"}
    props["edit"] = {"type": "array", "items": _ref("Edit"), "description": "changes to the parent's layers"}
    network = s.pop("required")
    s["anyOf"] = [
        {"title": "network", "required": network},
        {"title": "variant", "required": ["archspec", "extends"]},
        {"title": "library", "required": ["archspec", "blocks"],
         "propertyNames": {"enum": ["archspec", "description", "use", "blocks"]}},
    ]
    head = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "archspec spec (archspec: 1)",
            "description": "A network, a variant (extends:) or a block library for archspec. "
                           "See docs/spec.md; generated by `archspec schema`."}
    return {**head, **{k: v for k, v in s.items() if k not in head}}


def schema_json() -> str:
    """``archspec schema``: the schema as stable, indented JSON."""
    return json.dumps(schema(), indent=2, sort_keys=False)
