"""diff, the changes: one fact about one place (Change), and the same fact at several places (Group)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .locations import compact


@dataclass
class Change:
    """One fact about one place."""

    kind: str  # changed | replaced | removed | added | renamed
    summary: str  # exact words, channels included
    key: str  # words without per-place numbers: changes with the same key are grouped
    a: list  # on side A: [{path, type, text, output_shape, params, macs}], one per module or op
    b: list
    part: str
    params_delta: int = 0
    macs_delta: int = 0
    attrs: list = field(default_factory=list)  # [(attribute, value in A, value in B)]

    @property
    def location(self) -> str:
        pa = self.a[0]["path"] if self.a else None
        pb = self.b[0]["path"] if self.b else None
        if self.kind == "renamed":
            return f"{pa} -> {pb}"
        if self.kind == "replaced":
            a, b = [s["path"] for s in self.a], [s["path"] for s in self.b]
            return _span(b) if set(a) <= set(b) else f"{_span(a)} -> {_span(b)}"
        return pb if pb is not None else pa

    def to_json(self) -> dict:
        return {
            "kind": self.kind, "summary": self.summary, "location": self.location, "part": self.part,
            "attrs": [{"name": n, "a": _json_value(x), "b": _json_value(y)} for n, x, y in self.attrs],
            "params_delta": self.params_delta, "macs_delta": self.macs_delta,
            "a": self.a, "b": self.b,
        }


def _span(paths: list) -> str:
    folded = compact(paths)
    return folded[0] if len(folded) == 1 else ", ".join(paths)


def _json_value(v):
    if isinstance(v, tuple):
        return [_json_value(x) for x in v]
    return v


@dataclass
class Group:
    kind: str
    key: str
    changes: list

    @property
    def summary(self) -> str:
        texts = {c.summary for c in self.changes}
        return self.changes[0].summary if len(texts) == 1 else self.key

    @property
    def params_delta(self) -> int:
        return sum(c.params_delta for c in self.changes)

    @property
    def macs_delta(self) -> int:
        return sum(c.macs_delta for c in self.changes)

    @property
    def parts(self) -> list:
        return list(dict.fromkeys(c.part for c in self.changes))

    @property
    def locations(self) -> list:
        return list(dict.fromkeys(c.location for c in self.changes))

    def compact_locations(self) -> list:
        if self.kind == "renamed":
            a = compact([c.a[0]["path"] for c in self.changes])
            b = compact([c.b[0]["path"] for c in self.changes])
            if len(a) == 1 and len(b) == 1 and len(self.changes) > 1:
                return [f"{a[0]} -> {b[0]}"]
            return self.locations
        return compact(self.locations)

    def output_change(self) -> str | None:
        """'[1, 32, 28, 28] -> [1, 48, 28, 28]' when every place changes its output the same way."""
        pairs = set()
        for c in self.changes:
            if c.kind != "changed" or not c.a or not c.b:
                return None
            pairs.add((tuple(c.a[-1]["output_shape"] or ()), tuple(c.b[-1]["output_shape"] or ())))
        if len(pairs) != 1:
            return "output shapes change" if any(x != y for x, y in pairs) else None
        (x, y), = pairs
        return None if x == y else f"output {list(x)} -> {list(y)}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "summary": self.summary, "count": len(self.changes),
                "locations": self.compact_locations(), "parts": self.parts,
                "params_delta": self.params_delta, "macs_delta": self.macs_delta,
                "changes": [c.to_json() for c in self.changes]}
