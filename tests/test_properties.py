"""Property tests (hypothesis), issue 6.

(a) Random valid Inception-like specs: random branch counts, kernels (square and 1xn / nx1),
    strides, paddings, dilations, ceil modes, channels, concat and add merges, nested branches,
    repeats and aux heads. For every example the generated module is run by the torch oracle
    (``archspec.verify.verify_module``): parameter count, every state_dict key and shape, every
    module's output shape (forward hooks, eval and training), MACs (FlopCounterMode / 2) and the
    output must equal the static analysis.
(b) Random mutations of the shipped specs (delete a key, change a type, swap two values,
    truncate the file): archspec never ends in an internal error or a traceback, and never writes a
    file unless it succeeds.

Examples are derandomized, so CI sees the same ones every run.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec import cli
from archspec.errors import ArchspecError
from archspec.pipeline import compile_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "specs").glob("*.yaml"))
LIBS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "specs" / "lib").glob("*.yaml"))

_WORK = Path(tempfile.mkdtemp(prefix="archspec-props-"))  # hypothesis does not mix with tmp_path


# --- (a) random Inception-like networks ------------------------------------------------------------

class _Net:
    """Writes a spec while tracking the shape, so that every drawn network is valid."""

    def __init__(self, draw, c: int, h: int, w: int):
        self.draw, self.c, self.h, self.w = draw, c, h, w
        self.blocks: dict = {}
        self.layers: list = []
        self.n = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def conv_call(self, out: str, k, s, p, d, bias: bool) -> str:
        kk = k if isinstance(k, int) else f"({k[0]}, {k[1]})"
        pp = p if isinstance(p, int) else f"({p[0]}, {p[1]})"
        extra = "" if bias else ", bias=false"
        return f"conv2d({out}, {kk}, stride={s}, padding={pp}, dilation={d}{extra})"

    # a layer that changes the spatial size: any stride, padding and dilation that leaves >= 1 pixel
    def spatial_layer(self) -> None:
        d = self.draw
        kind = d(st.sampled_from(["conv", "conv", "maxpool", "avgpool"]))
        if kind == "conv":
            k = d(st.integers(1, 5))
            dil = d(st.integers(1, 2)) if k > 1 else 1
            span = dil * (k - 1) + 1
            p = d(st.integers(0, k // 2 + dil - 1))
            if min(self.h, self.w) + 2 * p < span:
                p = (span - min(self.h, self.w) + 1) // 2
            s = d(st.integers(1, 3))
            out = d(st.integers(1, 6))
            bias = d(st.booleans())
            name = self.name("conv")
            self.layers.append(f"  - {name}: {self.conv_call(str(out), k, s, p, dil, bias)}")
            if d(st.booleans()):
                self.layers.append(f"  - {self.name('bn')}: batchnorm2d(eps=0.001)")
            self.layers.append("  - relu")
            self.h = (self.h + 2 * p - span) // s + 1
            self.w = (self.w + 2 * p - span) // s + 1
            self.c = out
            return
        k = d(st.integers(1, min(3, self.h, self.w)))
        s = d(st.integers(1, 2))
        p = d(st.integers(0, k // 2))
        ceil = d(st.booleans())
        op = "maxpool2d" if kind == "maxpool" else "avgpool2d"
        named = d(st.booleans())
        call = f"{op}({k}, stride={s}, padding={p}, ceil_mode={'true' if ceil else 'false'})"
        self.layers.append(f"  - {self.name('pool')}: {call}" if named else f"  - {call}")
        self.h, self.w = (_pool_out(x, k, s, p, ceil) for x in (self.h, self.w))

    # a branch that keeps the spatial size (stride 1, "same" padding, maybe asymmetric, maybe dilated)
    def same_conv(self, out: str) -> str:
        d = self.draw
        shape = d(st.sampled_from(["square", "1xn", "nx1"]))
        n = d(st.sampled_from([1, 3, 5]))
        dil = d(st.integers(1, 2)) if n > 1 else 1
        half = dil * (n - 1) // 2
        if shape == "square":
            k, p = n, half
        elif shape == "1xn":
            k, p = (1, n), (0, half)
        else:
            k, p = (n, 1), (half, 0)
        return self.conv_call(out, k, 1, p, dil, d(st.booleans()))

    def branch(self, args: dict, out_expr: str | None, depth: int) -> list:
        """The items of one branch; an add branch ends with ``out_expr`` channels (or is empty: identity)."""
        d = self.draw
        items: list = []
        if out_expr is None and d(st.integers(0, 4)) == 0:
            pool = d(st.sampled_from(["maxpool2d", "avgpool2d"]))
            items.append(f"{pool}(3, stride=1, padding=1)")
        length = d(st.integers(1 if out_expr is None and not items else 0, 2))
        for i in range(length):
            if i == length - 1 and out_expr is not None:
                out = out_expr
            else:
                out = f"c{len(args) + 1}"
                args[out] = d(st.integers(1, 5))
            items.append({self.name("b"): self.same_conv(out)})
            if d(st.booleans()):
                items.append("relu")
        if depth == 0 and out_expr is None and d(st.integers(0, 5)) == 0:  # the branch splits again
            items.append({"concat": [self.branch(args, None, depth + 1) for _ in range(2)]})
        return items

    def merge_block(self) -> None:
        d = self.draw
        kind = d(st.sampled_from(["concat", "concat", "add"]))
        nb = d(st.integers(2, 4))
        args: dict = {}
        branches = []
        if kind == "add":
            # every branch ends with `out` channels, or is the identity when the input has them
            out = self.c if d(st.booleans()) else d(st.integers(1, 6))
            args["out"] = out
            for _ in range(nb):
                lines = self.branch(args, "out", 1)
                if not lines and out != self.c:
                    lines = [{self.name("b"): self.same_conv("out")}]
                branches.append(lines)
            channels = out
        else:
            for _ in range(nb):
                branches.append(self.branch(args, None, 0))
            channels = None
        name = f"Mixed{len(self.blocks) + 1}"
        self.blocks[name] = {"args": {k: "int" for k in args}, "layers": [{kind: branches}]}
        call = f"{name}({', '.join(str(v) for v in args.values())})"
        self.layers.append(f"  - {self.name('mixed')}: {call}")
        self.c = channels if channels is not None else None  # concat: read back from the analysis

    def spec(self, aux: list) -> str:
        text = ["archspec: 1", "name: random_net", f"input: [{self.c0}, {self.h0}, {self.w0}]", "num_classes: 7"]
        if self.blocks:
            text.append("blocks:")
            text.append(_indent(yaml.safe_dump(self.blocks, default_flow_style=False, sort_keys=False, width=1000), 2))
        text.append("layers:")
        text += self.layers
        if aux:
            text.append("aux:")
            text += aux
        return "\n".join(text) + "\n"


def _pool_out(size, k, s, p, ceil):
    span = size + 2 * p - k
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + p:
            out -= 1
        return out
    return span // s + 1


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.rstrip("\n").splitlines())


@st.composite
def inception_specs(draw) -> str:
    c, h = draw(st.integers(1, 4)), draw(st.integers(6, 20))
    w = draw(st.integers(6, 20))
    net = _Net(draw, c, h, w)
    net.c0, net.h0, net.w0 = c, h, w
    tops = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()) or net.c is None:
            net.spatial_layer()
        else:
            net.merge_block()
        tops.append(net.layers[-1].split(":")[0].strip(" -") if ":" in net.layers[-1] else None)
        if net.c is None:  # after a concat the channel count is symbolic; add a 1x1 conv to pin it
            out = draw(st.integers(1, 6))
            net.layers.append(f"  - {net.name('proj')}: conv2d({out}, 1)")
            net.c = out
            tops.append(net.layers[-1].split(":")[0].strip(" -"))
    if draw(st.booleans()):
        net.layers.append(f"  - {net.name('seq')}:\n      - repeat: {draw(st.integers(0, 3))}\n"
                          f"        body: ['conv2d({net.c}, 1)', relu]")
        tops.append(net.layers[-1].split(":")[0].strip(" -"))
    head = draw(st.sampled_from(["adaptive", "flat"]))
    if head == "adaptive":
        net.layers.append(f"  - avgpool: adaptive_avgpool2d({draw(st.integers(1, 2))})")
    net.layers += ["  - flatten", "  - dropout: dropout(0.2)", "  - fc: linear(num_classes)"]
    aux = []
    named = [t for t in tops if t]
    for i in range(draw(st.integers(0, 2)) if named else 0):
        src = draw(st.sampled_from(named))
        weight = draw(st.sampled_from([0.3, 0.4, 1.0]))
        module = draw(st.sampled_from([
            "[adaptive_avgpool2d(1), flatten, 'linear(3)']",
            "[adaptive_maxpool2d(2), flatten, 'linear(num_classes)']",
            "[flatten, 'linear(5)', relu, 'linear(num_classes)']"]))
        aux.append(f"  aux{i + 1}: {{from: {src}, loss_weight: {weight}, module: {module}}}")
    return net.spec(aux)


def _oracle(text: str, n: int) -> None:
    from archspec.emit import class_name_of
    from archspec.generate import generate
    from archspec.verify import verify_module

    path = _WORK / f"random{n}.yaml"
    path.write_text(text)
    try:
        c = compile_spec(str(path))
    except ArchspecError as exc:  # the strategy only draws valid networks
        raise AssertionError(f"{exc.format()}\n--- spec ---\n{text}") from None
    source = generate(c)  # an ArchspecError here is a generator bug: let it show
    namespace: dict = {}
    exec(compile(source, f"random{n}.py", "exec"), namespace)
    try:
        verify_module(c, namespace[class_name_of(c.resolved.spec)])
    except ArchspecError as exc:
        raise AssertionError(f"{exc.format(with_source=False)}\n--- spec ---\n{text}") from None


_counter = iter(range(10**9))
EXAMPLES = int(os.environ.get("ARCHSPEC_PROPERTY_EXAMPLES", "200"))


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(inception_specs())
def test_random_inception_networks_match_the_torch_oracle(text):
    pytest.importorskip("torch")
    _oracle(text, next(_counter))


def test_an_empty_repeat_generates():
    pytest.importorskip("torch")
    _oracle("archspec: 1\nname: random_net\ninput: [1, 6, 6]\nnum_classes: 7\nlayers:\n"
            "  - seq:\n      - repeat: 0\n        body: ['conv2d(1, 1)', relu]\n"
            "  - flatten\n  - fc: linear(num_classes)\n", -1)


def test_the_strategy_draws_what_it_claims():
    """The drawn specs really contain the features the property is about."""
    seen = set()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(inception_specs())
    def collect(text):
        for feature in ("concat:", "add:", "aux1:", "aux2:", "dilation=2", "stride=2", "stride=3", "(1, 3)",
                        "(5, 1)", "ceil_mode=true", "avgpool2d", "repeat:", "bias=false", "batchnorm2d"):
            if feature in text:
                seen.add(feature)
        if re.search(r"^ {6,}- concat:", text, re.M):  # a concat inside a branch of a concat
            seen.add("nested concat")

    collect()
    assert seen >= {"concat:", "add:", "aux1:", "aux2:", "dilation=2", "stride=2", "stride=3", "(1, 3)",
                    "(5, 1)", "ceil_mode=true", "avgpool2d", "repeat:", "bias=false", "batchnorm2d",
                    "nested concat"}


# --- (b) mutations of the shipped specs ------------------------------------------------------------

def _paths(data, prefix=()):
    """Every (path, value) in a loaded YAML document."""
    yield prefix, data
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


def _get(data, path):
    for p in path:
        data = data[p]
    return data


def _set(data, path, value):
    _get(data, path[:-1])[path[-1]] = value


_OTHER_VALUES = [None, 0, -1, 1.5, True, "", "x", "conv2d(", [], {}, [1, 2], {"a": 1}, 10**15, "relu"]


@st.composite
def mutations(draw):
    spec = draw(st.sampled_from(SPECS + LIBS))
    text = (ROOT / spec).read_text()
    kind = draw(st.sampled_from(["delete", "retype", "swap", "truncate"]))
    if kind == "truncate":
        return spec, kind, text[:draw(st.integers(0, len(text) - 1))]
    data = yaml.safe_load(text)
    paths = [p for p, _ in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    if kind == "delete":
        parent = _get(data, path[:-1])
        del parent[path[-1]]
    elif kind == "retype":
        old = _get(data, path)
        _set(data, path, draw(st.sampled_from([v for v in _OTHER_VALUES if type(v) is not type(old)])))
    else:  # swap two scalar values
        leaves = [p for p in paths if not isinstance(_get(data, p), (dict, list))]
        path, other = draw(st.sampled_from(leaves)), draw(st.sampled_from(leaves))
        a, b = _get(data, path), _get(data, other)
        _set(data, path, b)
        _set(data, other, a)
    return spec, kind, yaml.safe_dump(data, sort_keys=False)


def _run(argv) -> tuple:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, err.getvalue()


def _files(directory: Path) -> dict:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


MUTATIONS = int(os.environ.get("ARCHSPEC_MUTATION_EXAMPLES", "120"))


@settings(max_examples=MUTATIONS, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations())
def test_mutated_shipped_specs_never_crash_and_never_write_on_error(mutation):
    spec, kind, text = mutation
    work = Path(tempfile.mkdtemp(dir=_WORK))
    (work / "specs" / "lib").mkdir(parents=True)
    for lib in LIBS:
        shutil.copy(ROOT / lib, work / lib)
    for other in SPECS:  # parents for extends:
        shutil.copy(ROOT / other, work / other)
    target = work / spec
    target.write_text(text)
    before = _files(work)
    out = work / "out"
    for argv in (["check", str(target)], ["check", "--format", "json", str(target)],
                 ["build", str(target), "-o", str(out)]):
        rc, err = _run(argv)
        assert rc in (0, 1), (argv, kind, rc, err)
        assert "internal error" not in err and "Traceback" not in err, (kind, err)
        if rc == 1 and argv[0] == "build":
            assert not out.exists(), "a failed build wrote files"
    after = _files(work)
    written = {k for k in after if k not in before or after[k] != before[k]}
    assert all(k.startswith("out/") for k in written), written
    shutil.rmtree(work)
