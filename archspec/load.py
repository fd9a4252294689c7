"""Stage 1, load: YAML text -> plain data that remembers where every value came from.

PyYAML composes the node tree (with line/column marks); we build the Python values ourselves so
that duplicate keys, alias bombs, deep nesting and exotic tags are refused with a location.
``use:`` libraries and ``extends:`` parents are read here too and merged into one document.
"""
from __future__ import annotations

import math
import os

import yaml

from .errors import ErrorList, LoadError, Loc, SpecError
from .exprs import MAX_INT
from .files import NotAFile, TooLarge, read_bounded
from .resources import STOCK_PREFIX, missing_message, not_stock_message, stock_dir, stock_file, stock_ref

MAX_FILE_BYTES = 1_000_000  # a spec is text written by people or scripts; 1 MB is generous
MAX_NODES = 200_000  # values after alias expansion
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_FILES = 64  # files reachable through use:/extends:

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


class LDict(dict):
    """A mapping that knows its own location and the location of each key and value."""

    loc: Loc
    key_locs: dict
    value_locs: dict

    def loc_of(self, key, value: bool = True) -> Loc:
        table = self.value_locs if value else self.key_locs
        return table.get(key, self.loc)


class LList(list):
    """A sequence that knows its own location and the location of each item."""

    loc: Loc
    item_locs: list

    def loc_of(self, index: int) -> Loc:
        if 0 <= index < len(self.item_locs):
            return self.item_locs[index]
        return self.loc


def loc_of(container, key) -> Loc | None:
    """Location of ``container[key]`` if the container came from YAML."""
    if isinstance(container, LDict):
        return container.loc_of(key)
    if isinstance(container, LList) and isinstance(key, int):
        return container.loc_of(key)
    return getattr(container, "loc", None)


def _mark(file: str, mark, path: str) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1, path)


def join_path(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [value for _, value in node.value]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _child_path(node, i: int, path: str) -> str:
    if isinstance(node, yaml.MappingNode):
        key = node.value[i][0]
        return join_path(path, key.value if isinstance(key, yaml.ScalarNode) else "?")
    return join_path(path, i)


def _measure(root, file: str) -> None:
    """Refuse alias bombs, recursive aliases and deep nesting before any value is built.

    PyYAML's composer shares the node of an anchor between its aliases, so the composed graph is
    as small as the text; only building values would expand it. One pass over the distinct nodes
    computes, for each, the number of values it would expand to (capped) and its height.
    """
    info: dict = {}  # id(node) -> (expanded size, height)
    active: set = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = [info[id(c)] for c in _children(node)]
            size = min(1 + sum(k[0] for k in kids), MAX_NODES + 1)
            info[key] = (size, 1 + max((k[1] for k in kids), default=-1))
            active.discard(key)
            continue
        if key in info:
            continue
        kids = _children(node)
        if not kids:
            info[key] = (1, 0)
            continue
        active.add(key)
        stack.append((node, True))
        for child in kids:
            if id(child) in active:
                raise LoadError("recursive alias: an anchor is used inside itself", _mark(file, node.start_mark, ""))
            if id(child) not in info:
                stack.append((child, False))
    size, height = info[id(root)]
    if size > MAX_NODES:
        node, path = root, ""
        while True:  # descend to the smallest node that is still too large: usually an anchor
            kids = _children(node)
            big = [i for i, c in enumerate(kids) if info[id(c)][0] > MAX_NODES]
            if not big:
                break
            path = _child_path(node, big[0], path)
            node = kids[big[0]]
        raise LoadError(f"document too large: more than {MAX_NODES} values after expanding anchors "
                        "and aliases (an alias bomb?)", _mark(file, node.start_mark, path))
    if height > MAX_DEPTH:
        node, path = root, ""
        for _ in range(MAX_DEPTH + 1):
            kids = _children(node)
            i = max(range(len(kids)), key=lambda j: info[id(kids[j])][1])
            path = _child_path(node, i, path)
            node = kids[i]
        raise LoadError(f"nesting deeper than {MAX_DEPTH} levels", _mark(file, node.start_mark, path))


_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_KINDS = {bool: "a boolean", int: "an integer", float: "a number", type(None): "null"}


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.count = 0
        self.scalars = yaml.SafeLoader("")

    def build(self, node, path: str, depth: int):
        self.count += 1
        if self.count > MAX_NODES:
            raise LoadError(
                f"document too large: more than {MAX_NODES} values after expanding anchors "
                "and aliases (an alias bomb?)",
                _mark(self.file, node.start_mark, path),
            )
        if depth > MAX_DEPTH:
            raise LoadError(f"nesting deeper than {MAX_DEPTH} levels", _mark(self.file, node.start_mark, path))
        loc = _mark(self.file, node.start_mark, path)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            raise LoadError(f"unsupported YAML tag {node.tag}", loc)  # !!python/object/apply:..., !!set, !!omap
        if isinstance(node, yaml.MappingNode):
            out = LDict()
            out.loc, out.key_locs, out.value_locs = loc, {}, {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise LoadError("YAML merge keys (<<) are not supported", _mark(self.file, key_node.start_mark, path))
                if not isinstance(key_node, yaml.ScalarNode):
                    raise LoadError("mapping keys must be plain scalars", _mark(self.file, key_node.start_mark, path))
                if node.flow_style and out:
                    self.check_cut_call(out, path)
                key = self.scalar(key_node, path)
                if not isinstance(key, str):
                    raise LoadError(f"key '{key_node.value}' is not a string: YAML reads it as {_KINDS.get(type(key), 'a value')}"
                                    f" (quote it, e.g. '{key_node.value}':, to use it as a name)",
                                    _mark(self.file, key_node.start_mark, path))
                sub = join_path(path, key)
                key_loc = _mark(self.file, key_node.start_mark, sub)
                if key in out:
                    first = out.key_locs[key]
                    raise LoadError(f"duplicate key '{key}' (first defined at line {first.line})", key_loc)
                out.key_locs[key] = key_loc
                out[key] = self.build(value_node, sub, depth + 1)
                out.value_locs[key] = _mark(self.file, value_node.start_mark, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            out = LList()
            out.loc, out.item_locs = loc, []
            for i, item in enumerate(node.value):
                sub = join_path(path, i)
                out.append(self.build(item, sub, depth + 1))
                out.item_locs.append(_mark(self.file, item.start_mark, sub))
            return out
        return self.scalar(node, path)

    def check_cut_call(self, out: "LDict", path: str) -> None:
        """In ``{conv: conv2d(8, 3)}`` the comma ends the value: say so before the stray ``3)`` key is blamed."""
        last = next(reversed(out))
        value = out[last]
        if isinstance(value, str) and value.count("(") > value.count(")"):
            raise LoadError(f"the call '{value}' is cut at a comma: inside YAML braces {{a: b}} commas separate "
                            f"entries; write '{last}: ...' in block style or quote the call", out.value_locs[last])

    def scalar(self, node, path: str):
        if node.tag not in _SCALAR_TAGS:
            raise LoadError(f"unsupported YAML tag {node.tag}", _mark(self.file, node.start_mark, path))
        text = node.value
        if node.tag == "tag:yaml.org,2002:int" and len(text) > 24:  # before int() meets a 5000-digit literal
            raise LoadError(f"integer {_clip(text)} is too large (numbers in a spec are at most 10^15)",
                            _mark(self.file, node.start_mark, path))
        try:
            value = self.scalars.construct_object(node, deep=True)
        except (ValueError, OverflowError, yaml.YAMLError):
            raise LoadError(f"cannot read the value {_clip(text)!r}", _mark(self.file, node.start_mark, path)) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise LoadError(f"{text} is not a finite number", _mark(self.file, node.start_mark, path))
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise LoadError(f"integer {_clip(text)} is too large (numbers in a spec are at most 10^15)",
                            _mark(self.file, node.start_mark, path))
        return value


def _clip(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[:width] + "..."


def read_text(file: str, where: Loc | None = None) -> str:
    """Read a spec file, refusing what is not a small UTF-8 text file (docs/errors.md, Files)."""
    at = where or Loc(file)
    try:
        raw = read_bounded(file, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise LoadError(f"no such file: {file}", at) from None
    except NotAFile as exc:
        raise LoadError(f"{file} is {exc.kind}, not a spec file", at) from None
    except TooLarge as exc:  # a size read from the disk, or what was read when the size said less
        size = exc.size if exc.size > MAX_FILE_BYTES + 1 else f"more than {MAX_FILE_BYTES}"
        raise LoadError(f"{file} is {size} bytes; specs are limited to {MAX_FILE_BYTES} bytes", at) from None
    except OSError as exc:
        raise LoadError(f"cannot read {file}: {exc.strerror or exc}", at) from None
    except ValueError:  # a NUL byte in the path (from the API; use:/extends: refuse it earlier)
        raise LoadError(f"cannot read {file}: the path contains a NUL byte", at) from None
    if b"\x00" in raw:
        raise LoadError(f"{file} is a binary file, not YAML", at)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{file} is not valid UTF-8 (byte {exc.start})", at) from None
    _refuse_yaml_only_breaks(text, file)
    return text


# YAML 1.1 breaks lines at NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR; editors, diff and grep
# do not. Text an editor shows on a comment line would be live YAML, and every line number after
# it would be off by one, so they are refused (docs/errors.md, "Line breaks").
_YAML_ONLY_BREAKS = {"\x85": "U+0085 (NEXT LINE)", "\u2028": "U+2028 (LINE SEPARATOR)",
                     "\u2029": "U+2029 (PARAGRAPH SEPARATOR)"}


def _refuse_yaml_only_breaks(text: str, file: str) -> None:
    at = min((i for i in (text.find(c) for c in _YAML_ONLY_BREAKS) if i >= 0), default=-1)
    if at < 0:
        return
    line, col = editor_position(text, at)
    char = text[at]
    raise LoadError(f"{_YAML_ONLY_BREAKS[char]} is a line break in YAML but not in editors: what follows it would "
                    f"be read as a new line; write it as the escape \\u{ord(char):04x} in a double-quoted string",
                    Loc(file, line, col))


def editor_position(text: str, index: int) -> tuple:
    """(line, column), 1-based, of ``text[index]`` as editors count: lines end at \\n, \\r\\n or \\r."""
    before = text[:index]
    line_start = max(before.rfind("\n"), before.rfind("\r")) + 1
    line = before.count("\n") + before.count("\r") - before.count("\r\n") + 1
    return line, index - line_start + 1


def parse_yaml(text: str, file: str):
    """Parse one YAML document into LDict/LList/scalars."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        ctx = exc.context_mark
        if "maximum nesting depth" in problem:  # libyaml's own limit (1000 levels)
            problem = f"nesting deeper than {MAX_DEPTH} levels"
        elif exc.problem and exc.context and ctx is not None and ctx is not mark:
            # "while parsing a flow sequence" alone does not say which one: give where it started
            problem += f" ({exc.context} that starts at line {ctx.line + 1}, column {ctx.column + 1})"
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file)
        prefix = "" if problem.startswith("nesting deeper") else "invalid YAML: "
        raise LoadError(f"{prefix}{problem}", loc) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not accept, found before parsing
        at = text.find(chr(exc.character))  # libyaml reports a byte offset, PyYAML a character index
        loc = Loc(file, *editor_position(text, at if at >= 0 else exc.position))
        raise LoadError(f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}", loc) from None
    except yaml.YAMLError as exc:
        raise LoadError(f"invalid YAML: {exc}", Loc(file)) from None
    except RecursionError:
        raise LoadError(f"nesting deeper than {MAX_DEPTH} levels", Loc(file)) from None
    if node is None:
        raise LoadError("empty spec file", Loc(file, 1, 1))
    _measure(node, file)
    try:
        return _Builder(file).build(node, "", 0)
    except RecursionError:
        raise LoadError(f"nesting deeper than {MAX_DEPTH} levels", Loc(file)) from None


def _load_mapping(file: str, where: Loc | None = None) -> LDict:
    data = parse_yaml(read_text(file, where), file)
    if not isinstance(data, LDict):
        raise SpecError("the top level of a spec must be a mapping", Loc(file, 1, 1))
    return data


class _Resolver:
    """Reads a spec with its ``use:`` libraries and ``extends:`` parents, refusing cycles."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.files: list[str] = []

    def resolve_ref(self, base_file: str, ref, where: Loc, kind: str = "use") -> str:
        """The file a ``use:`` or ``extends:`` reference names: ``stock:PATH`` (a file of the stock
        specs), a path relative to the file that holds it, confined to the root (the stock
        directory for a stock file), or for ``extends:``, a bare stock spec name (``inception_v3``)."""
        if not isinstance(ref, str) or not ref.strip():
            raise SpecError("expected a relative path to a spec file", where)
        if "\x00" in ref:
            raise SpecError(f"path '{ref}' contains a NUL byte", where)
        if ref.startswith(STOCK_PREFIX):
            stock = stock_ref(ref)
            if stock is None:
                raise SpecError(not_stock_message(ref), where)
            return stock
        if os.path.isabs(ref):
            raise SpecError(f"absolute path '{ref}' is not allowed; use a path relative to the spec", where)
        target = os.path.normpath(os.path.join(os.path.dirname(base_file), ref))
        bare = "/" not in ref and os.sep not in ref
        if kind == "extends" and bare and not os.path.lexists(target):
            stock = stock_file(ref)
            if stock is None:
                raise SpecError(missing_message(ref), where)
            return stock
        root = self.root_of(base_file)
        real = os.path.realpath(target)
        if os.path.commonpath([real, root]) != root:
            hint = f" (from any folder, a stock file is {STOCK_PREFIX}{_stock_rel(real)})" \
                if _stock_rel(real) else ""
            raise SpecError(f"'{ref}' leaves the spec's root directory {_rel(root)}{hint}", where)
        return target

    def root_of(self, file: str) -> str:
        """The directory a file's references are confined to: the stock specs' for a stock file
        (``stock:lib/basic.yaml`` uses its neighbours), else the root of the spec being read."""
        stock = os.path.realpath(stock_dir())
        real = os.path.realpath(file)
        if os.path.commonpath([real, stock]) == stock and os.path.commonpath([self.root, stock]) != stock:
            return stock
        return self.root

    def load(self, file: str, chain: tuple, where: Loc | None = None, kind: str = "spec") -> LDict:
        real = os.path.realpath(file)
        if real in chain:
            cycle = " -> ".join(_rel(c) for c in (*chain[chain.index(real):], real))
            raise SpecError(f"{kind} cycle: {cycle}", where)
        if len(self.files) >= MAX_FILES:
            raise SpecError(f"more than {MAX_FILES} files reached through use:/extends:", where)
        self.files.append(file)
        data = _load_mapping(file, where)
        chain = (*chain, real)
        if "extends" in data:
            data = self.extend(file, data, chain)
        if "use" in data:
            self.use(file, data, chain)
        return data

    def use(self, file: str, data: LDict, chain: tuple) -> None:
        refs = data["use"]
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list):
            raise SpecError("use: expects a list of library files", data.loc_of("use"))
        library: dict = {}
        for i, ref in enumerate(refs):
            where = refs.loc_of(i) if isinstance(refs, LList) else data.loc_of("use")
            target = self.resolve_ref(file, ref, where)
            lib = self.load(target, chain, where, kind="use")
            blocks = lib.get("blocks", {})
            if not isinstance(blocks, dict):
                continue  # validation of the library reports it
            for name, body in blocks.items():
                library.setdefault(name, (blocks, body))
            _check_library(lib)
        blocks = data.get("blocks")
        if blocks is None:
            blocks = LDict()
            blocks.loc, blocks.key_locs, blocks.value_locs = data.loc, {}, {}
            data["blocks"] = blocks
        if not isinstance(blocks, LDict):
            return
        # The spec's own blocks win over library blocks of the same name.
        merged = LDict()
        merged.loc, merged.key_locs, merged.value_locs = blocks.loc, {}, {}
        for name, (src, body) in library.items():
            if name not in blocks:
                merged[name] = body
                merged.key_locs[name] = src.key_locs[name]
                merged.value_locs[name] = src.value_locs[name]
        for name, body in blocks.items():
            merged[name] = body
            merged.key_locs[name] = blocks.key_locs[name]
            merged.value_locs[name] = blocks.value_locs[name]
        data["blocks"] = merged
        del data["use"]

    def extend(self, file: str, data: LDict, chain: tuple) -> LDict:
        where = data.loc_of("extends")
        target = self.resolve_ref(file, data["extends"], where, kind="extends")
        parent = self.load(target, chain, where, kind="extends")
        return apply_variant(parent, data)


def _check_library(lib: LDict) -> None:
    unknown = [k for k in lib if k not in ("archspec", "blocks", "description")]
    if unknown:
        key = unknown[0]
        raise SpecError(f"a library file may only hold archspec, description and blocks, not '{key}'", lib.loc_of(key, value=False))


# Keys of a variant merged into the parent by name; every other key replaces the parent's value.
_MERGED = ("args", "blocks", "aux", "expect")


def apply_variant(parent: LDict, child: LDict) -> LDict:
    """``extends:`` semantics: start from the parent, merge mappings by name, apply ``edit:``."""
    out = LDict(parent)
    out.loc = child.loc
    out.key_locs = dict(parent.key_locs)
    out.value_locs = dict(parent.value_locs)
    for key, value in child.items():
        if key in ("extends", "edit"):
            continue
        if key in _MERGED and isinstance(value, LDict) and isinstance(parent.get(key), LDict):
            out[key] = _merge_named(parent[key], value)
        else:
            out[key] = value
        out.key_locs[key] = child.key_locs[key]
        out.value_locs[key] = child.value_locs[key]
    if key_list := [k for k in ("expect",) if k not in child and k in out]:
        # A variant is a different network: the parent's expectations do not carry over.
        for key in key_list:
            del out[key]
    if "edit" in child:
        out["layers"] = apply_edits(out.get("layers"), child["edit"], child.loc_of("edit"))
    return out


def _merge_named(base: LDict, over: LDict) -> LDict:
    out = LDict(base)
    out.loc = over.loc
    out.key_locs = dict(base.key_locs)
    out.value_locs = dict(base.value_locs)
    for key, value in over.items():
        if value is None:  # `name: null` removes an entry
            out.pop(key, None)
            continue
        out[key] = value
        out.key_locs[key] = over.key_locs[key]
        out.value_locs[key] = over.value_locs[key]
    return out


def item_name(item) -> str | None:
    """Name of a top-level layer entry ``{name: ...}``, None for anonymous ones."""
    if isinstance(item, dict):
        names = [k for k in item if k not in ("if",)]
        construct = names[0] in ("concat", "add", "mul") or (names[0] == "body" and isinstance(item["body"], list)) \
            if names else True  # a merge, or a group {if: c, body: [...]}
        if len(names) == 1 and not construct and not (names[0] == "repeat" and "body" in item):
            return names[0]
    return None


def apply_edits(layers, edits, where: Loc):
    """Apply ``edit:`` operations (replace / insert before|after / remove) to a layer list."""
    if not isinstance(layers, list):
        raise SpecError("edit: needs a parent with a layers list", where)
    if not isinstance(edits, list):
        raise SpecError("edit: expects a list of operations", where)
    locs = list(layers.item_locs) if isinstance(layers, LList) else [where] * len(layers)
    edited = _EditList(layers, locs)
    errors = []
    for i, op in enumerate(edits):
        at = edits.loc_of(i) if isinstance(edits, LList) else where
        try:
            _apply_edit(edited, op, at)
        except SpecError as exc:
            errors.append(exc)
            if edited.scanned > MAX_EDIT_SCAN:
                break  # every later edit of that name would say the same
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorList(errors)
    out = LList(edited.items())
    out.loc = layers.loc if isinstance(layers, LList) else where
    out.item_locs = edited.locs()
    return out


MAX_EDIT_SCAN = 2_000_000  # layers visited to find the first of several layers that share a name


class _EditList:
    """The layer list under edit: a doubly linked list with an index of top-level names, so that an
    edit costs what it inserts, not a search and a copy of the whole list (45,000 edits of a
    45,000-layer list take a fraction of a second, not minutes; bench/scale.py).

    Nodes 0 and 1 are the ends. Several layers may share a name (under complementary ``if:``); an
    edit names the first, found by a walk from the start, which is bounded by MAX_EDIT_SCAN.
    """

    def __init__(self, items: list, locs: list):
        self.item, self.loc = [None, None], [None, None]
        self.prev, self.next = [-1, 0], [1, -1]
        self.alive = [False, False]
        self.named: dict = {}  # name -> node ids, removed ones dropped when next looked up
        self.scanned = 0
        self.insert_before(1, list(zip(items, locs)))

    def _new(self, item, loc) -> int:
        node = len(self.item)
        self.item.append(item)
        self.loc.append(loc)
        self.prev.append(-1)
        self.next.append(-1)
        self.alive.append(True)
        name = item_name(item)
        if name is not None:
            self.named.setdefault(name, []).append(node)
        return node

    def insert_before(self, node: int, new: list) -> None:
        for item, loc in new:
            fresh = self._new(item, loc)
            before = self.prev[node]
            self.prev[fresh], self.next[fresh] = before, node
            self.next[before] = self.prev[node] = fresh

    def remove(self, node: int) -> None:
        self.alive[node] = False
        before, after = self.prev[node], self.next[node]
        self.next[before], self.prev[after] = after, before

    def find(self, name, at: Loc) -> int | None:
        """The first live layer named ``name``, or None; ``at`` is the edit, for the error past MAX_EDIT_SCAN."""
        nodes = [n for n in self.named.get(name, ()) if self.alive[n]] if isinstance(name, str) else []
        if nodes:
            self.named[name] = nodes
        if len(nodes) < 2:
            return nodes[0] if nodes else None
        wanted, node = set(nodes), self.next[0]
        while node not in wanted:
            node = self.next[node]
            self.scanned += 1
        if self.scanned > MAX_EDIT_SCAN:
            raise SpecError(f"edit: more than {MAX_EDIT_SCAN} layers visited to find layers that share a name "
                            f"('{name}'); give them distinct names", at)
        return node

    def _walk(self):
        node = self.next[0]
        while node != 1:
            yield node
            node = self.next[node]

    def items(self) -> list:
        return [self.item[n] for n in self._walk()]

    def locs(self) -> list:
        return [self.loc[n] for n in self._walk()]


_EDIT_KEYS = {"replace", "with", "after", "before", "insert", "remove"}


def _apply_edit(layers: _EditList, op, at: Loc) -> None:
    if not isinstance(op, LDict):
        raise SpecError("an edit is a mapping such as {replace: NAME, with: [...]}", at)
    for key in op:
        if key not in _EDIT_KEYS:
            raise SpecError(f"unknown edit key '{key}' (expected one of {', '.join(sorted(_EDIT_KEYS))})", op.loc_of(key, value=False))

    def node_of(key: str) -> int:
        node = layers.find(op[key], op.loc_of(key))
        if node is None:
            raise SpecError(f"edit: no top-level layer named '{op[key]}'", op.loc_of(key))
        return node

    def new_items(key: str) -> list:
        value = op.get(key)
        if value is None:
            raise SpecError(f"edit: '{key}' needs the new layers", at)
        items = value if isinstance(value, list) else [value]
        locs = value.item_locs if isinstance(value, LList) else [op.loc_of(key)] * len(items)
        return list(zip(items, locs))

    if "replace" in op:
        node = node_of("replace")
        layers.insert_before(node, new_items("with"))
        layers.remove(node)
    elif "remove" in op:
        layers.remove(node_of("remove"))
    elif "after" in op or "before" in op:
        key = "after" if "after" in op else "before"
        node = node_of(key)
        layers.insert_before(layers.next[node] if key == "after" else node, new_items("insert"))
    else:
        raise SpecError("an edit needs one of replace, remove, after, before", at)


def _stock_rel(real: str) -> str | None:
    """A path's name under the stock specs (``lib/basic.yaml``), None outside them."""
    stock = os.path.realpath(stock_dir())
    if os.path.commonpath([real, stock]) != stock or not os.path.isfile(real):
        return None
    return os.path.relpath(real, stock).replace(os.sep, "/")


def _rel(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("../..") else rel


def load(file: str, root: str | None = None) -> LDict:
    """Read a spec file and everything it uses or extends.

    >>> data = load("specs/googlenet.yaml")   # doctest: +SKIP
    >>> data["name"]                            # doctest: +SKIP
    'googlenet'
    """
    resolver = _Resolver(root or os.path.dirname(os.path.abspath(file)) or ".")
    return resolver.load(file, ())
