"""Hostile and broken specs: one clean error each, nothing lost, no code injected (issue 6).

The corpus lives in tests/hostile/: each file says what it tries in its first line and, in its
last lines, the exact errors it must produce: ``# expect: [FILE:]LINE:COL: MESSAGE`` (FILE only
when the error is in another file, relative to tests/hostile/). Inputs that cannot hold such a
comment (binary, empty, oversized files, directories) are made here in a temporary directory.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from archspec import cli
from archspec.errors import ArchspecError, flatten
from archspec.load import MAX_FILE_BYTES, MAX_NODES
from archspec.pipeline import compile_spec

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ROOT / "tests" / "hostile"
CORPUS = sorted(p.name for p in HOSTILE.glob("*.yaml"))
_EXPECT = re.compile(r"# expect: (?:(?P<file>[^\s:]+\.ya?ml):)?(?P<line>\d+):(?P<col>\d+): (?P<message>.*)")

SMALL = "archspec: 1\nname: net\ninput: [3, 16, 16]\nnum_classes: 10\nlayers:\n  - flatten\n  - fc: linear(num_classes)\n"


def expectations(name: str) -> list:
    text = (HOSTILE / name).read_bytes().decode("utf-8")
    out = []
    for line in text.splitlines():
        m = _EXPECT.fullmatch(line)
        if m:
            file = f"tests/hostile/{m['file']}" if m["file"] else f"tests/hostile/{name}"
            out.append((os.path.normpath(file), int(m["line"]), int(m["col"]), m["message"]))
    return out


def errors_of(path: str) -> list:
    with pytest.raises(ArchspecError) as info:
        compile_spec(path)
    return [(os.path.normpath(e.loc.file), e.loc.line, e.loc.col, e.message) for e in flatten(info.value)]


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # messages name files relative to the working directory


# --- the corpus ---------------------------------------------------------------------------------

def test_corpus_is_large_and_every_file_states_its_errors():
    assert len(CORPUS) >= 40
    for name in CORPUS:
        assert expectations(name), f"{name} has no '# expect:' line"


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_error_and_location(name, at_root):
    assert errors_of(f"tests/hostile/{name}") == expectations(name)


# A sample through the real command line: exit 1, `file:line:col: error: message`, no traceback.
CLI_SAMPLE = ["alias_bomb.yaml", "deep_nesting.yaml", "tag_python_object.yaml", "key_bool.yaml",
              "name_injection.yaml", "call_attribute.yaml", "use_parent_escape.yaml", "repeat_huge.yaml",
              "huge_int_literal.yaml", "control_char.yaml", "use_nul.yaml", "line_separator_comment.yaml"]


def test_corpus_sample_through_the_cli(cli):
    files = [f"tests/hostile/{n}" for n in CLI_SAMPLE]
    r = cli("check", *files)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    heads = [line for line in r.stderr.splitlines() if re.match(r"tests/hostile/\S+:\d+:\d+: error: ", line)]
    want = [f"{f}:{line}:{col}: error: {msg}" for n in CLI_SAMPLE for f, line, col, msg in expectations(n)]
    assert heads == want


def test_corpus_sample_as_json(cli):
    files = [f"tests/hostile/{n}" for n in CLI_SAMPLE[:4]]
    r = cli("check", "--format", "json", *files)
    assert r.returncode == 1
    errors = [json.loads(line)["error"] for line in r.stderr.splitlines()]
    assert [(e["file"], e["line"], e["column"], e["message"]) for e in errors] == [
        x for n in CLI_SAMPLE[:4] for x in expectations(n)]
    assert [e["stage"] for e in errors] == ["load", "load", "load", "load"]
    assert errors[1]["yaml_path"].startswith("layers[0].k0[0].k1[0]")
    assert json.loads(r.stdout) == []


# --- files that cannot hold a comment ------------------------------------------------------------

def _write(tmp_path, name, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_empty_file(tmp_path):
    path = _write(tmp_path, "empty.yaml", b"")
    assert errors_of(path) == [(path, 1, 1, "empty spec file")]


def test_binary_file(tmp_path):
    path = _write(tmp_path, "model.yaml", b"archspec: 1\n\x00\x01\x02PK\x03\x04")
    assert errors_of(path) == [(path, 0, 0, f"{path} is a binary file, not YAML")]


def test_non_utf8_file(tmp_path):
    path = _write(tmp_path, "latin1.yaml", "archspec: 1\nname: caf\u00e9\n".encode("latin-1"))
    assert errors_of(path) == [(path, 0, 0, f"{path} is not valid UTF-8 (byte 21)")]


def test_directory(tmp_path):
    (tmp_path / "specdir.yaml").mkdir()
    path = str(tmp_path / "specdir.yaml")
    assert errors_of(path) == [(path, 0, 0, f"{path} is a directory, not a spec file")]


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    assert errors_of(path) == [(path, 0, 0, f"no such file: {path}")]


def test_oversized_file_is_refused_without_reading_it(tmp_path):
    path = _write(tmp_path, "big.yaml", SMALL.encode() + b"#" * MAX_FILE_BYTES)
    size = os.path.getsize(path)
    assert errors_of(path) == [(path, 0, 0, f"{path} is {size} bytes; specs are limited to {MAX_FILE_BYTES} bytes")]


def test_a_file_at_the_limit_is_read(tmp_path):
    text = SMALL + "#" * (MAX_FILE_BYTES - len(SMALL) - 1) + "\n"
    path = _write(tmp_path, "limit.yaml", text.encode())
    assert os.path.getsize(path) == MAX_FILE_BYTES
    assert compile_spec(path).analysis.totals.params == 768 * 10 + 10


def test_bom_and_crlf_are_accepted(tmp_path):
    path = _write(tmp_path, "bom.yaml", b"\xef\xbb\xbf" + SMALL.replace("\n", "\r\n").encode())
    assert compile_spec(path).analysis.totals.params == 7690


def test_symlink_out_of_the_spec_directory(tmp_path, monkeypatch):
    # run beside the project: the message shows the root relative to the current directory when it
    # is near, so the checkout's own location (a clone in /tmp, as CI makes) must not matter
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside"
    inside = tmp_path / "project"
    outside.mkdir()
    inside.mkdir()
    (outside / "lib.yaml").write_text("archspec: 1\nblocks: {}\n")
    os.symlink(outside / "lib.yaml", inside / "lib.yaml")
    spec = inside / "net.yaml"
    spec.write_text(SMALL + "use: [lib.yaml]\n")
    assert [m for *_, m in errors_of(str(spec))] == ["'lib.yaml' leaves the spec's root directory project"]


def test_libraries_below_the_spec_directory_are_allowed(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "unit.yaml").write_text("archspec: 1\nblocks:\n  Unit:\n    layers: [relu]\n")
    spec = tmp_path / "net.yaml"
    spec.write_text(SMALL.replace("  - flatten\n", "  - u: Unit\n  - flatten\n") + "use: [lib/unit.yaml]\n")
    assert compile_spec(str(spec)).analysis.totals.params == 7690


# --- bounds: refused after little work, absurd sizes analysed without allocating -------------------
# Work is measured, not timed (a loaded machine would make a time limit flaky): the Python function
# calls one compile makes, the layers the expander builds, and the peak of traced memory.

@pytest.fixture
def warm():
    """One compile first, so that first-time imports are not counted as the work of a spec."""
    compile_spec(str(ROOT / "specs" / "alexnet.yaml"))


def _calls(fn) -> tuple:
    """(Python function calls ``fn`` made, the ArchspecError it raised or None)."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        fn()
    except ArchspecError as exc:
        return calls, exc
    finally:
        sys.setprofile(None)
    return calls, None


def _layers_built(monkeypatch) -> list:
    """A one-element list that counts the layers the expander builds (every one passes _count)."""
    import archspec.expand

    built = [0]
    real = archspec.expand._Expander._count

    def counted(self, loc):
        built[0] += 1
        return real(self, loc)

    monkeypatch.setattr(archspec.expand._Expander, "_count", counted)
    return built


def test_alias_bomb_is_refused_before_expanding(tmp_path, warm):
    # ten levels of ten aliases: 10^10 values if anything expanded it
    lines = ["archspec: 1", "a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = _write(tmp_path, "bomb.yaml", ("\n".join(lines) + "\n").encode())
    tracemalloc.start()
    calls, exc = _calls(lambda: compile_spec(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert exc is not None and exc.message.startswith(f"document too large: more than {MAX_NODES} values")
    assert (exc.loc.line, exc.loc.col, exc.loc.path) == (7, 5, "a5")  # a5 expands to 10^6 values
    assert calls < 5_000  # measured 1,363: one visit per distinct YAML node, none per expanded value
    assert peak < 20_000_000


def test_deep_flow_nesting_is_refused_before_parsing_it_all(tmp_path, warm):
    path = _write(tmp_path, "deep.yaml", ("layers: " + "[" * 50_000 + "]" * 50_000 + "\n").encode())
    calls, exc = _calls(lambda: compile_spec(path))
    assert exc.message == "nesting deeper than 64 levels"
    assert calls < 1_000  # measured 70; nothing per bracket


@pytest.mark.parametrize("name,layers,calls_below", [
    # the repeat count is refused before its body is built
    ("repeat_huge.yaml", 2, 5_000),
    # 10^6 layers: refused after the first repetition of the outer repeat (1,000 layers) predicts the rest
    ("network_too_large.yaml", 1_001, 50_000),
])
def test_absurd_sizes_are_refused_after_little_work(name, layers, calls_below, at_root, warm, monkeypatch):
    built = _layers_built(monkeypatch)
    calls, exc = _calls(lambda: compile_spec(f"tests/hostile/{name}"))
    assert exc is not None
    assert built[0] == layers
    assert calls < calls_below  # measured 678 and 11,705


def test_blocks_doubling_at_every_level_stop_at_the_layer_bound(at_root, monkeypatch):
    # 2^20 block instances cannot be predicted: they are refused when layer MAX_MODULES + 1 is
    # built, so the work is bounded by the limit and not by the network (bench/ times it)
    from archspec.expand import MAX_MODULES

    built = _layers_built(monkeypatch)
    with pytest.raises(ArchspecError) as info:
        compile_spec("tests/hostile/block_fanout.yaml")
    assert info.value.message == f"the network has more than {MAX_MODULES} layers (modules and functional ops)"
    assert built[0] == MAX_MODULES + 1


def _absurd(tmp_path, name, input_, layer) -> str:
    text = (f"archspec: 1\nname: {name}\ninput: {input_}\nnum_classes: 10\n"
            f"layers:\n  - {layer}\n  - flatten\n  - fc: linear(num_classes)\n")
    return _write(tmp_path, f"{name}.yaml", text.encode())


@pytest.mark.parametrize("name,input_,layer,params,macs,output,small_input,small_layer", [
    # 10^12 weights in one 1x1 convolution
    ("tera", "[1000000, 1, 1]", "conv: conv2d(1000000, 1)", 10**12 + 10**6 + 10**7 + 10, 10**12 + 10**7, (10,),
     "[7, 1, 1]", "conv: conv2d(9, 1)"),
    # a 10^6 x 10^6 kernel over a 10^6 x 10^6 image
    ("mega_kernel", "[3, 1000000, 1000000]", "conv: conv2d(8, 1000000)", 8 * 3 * 10**12 + 8 + 90, 24 * 10**12 + 80,
     (10,), "[3, 9, 9]", "conv: conv2d(8, 7)"),
])
def test_absurd_networks_are_analysed_statically(tmp_path, warm, name, input_, layer, params, macs, output,
                                                 small_input, small_layer):
    small = _absurd(tmp_path, "small", small_input, small_layer)  # the same network with small sizes
    small_calls, _ = _calls(lambda: compile_spec(small))
    path = _absurd(tmp_path, name, input_, layer)
    tracemalloc.start()
    calls, _ = _calls(lambda: compile_spec(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    c = compile_spec(path)
    t = c.analysis.totals
    assert (t.params, t.macs, c.analysis.output) == (params, macs, output)
    assert calls == small_calls  # the work does not depend on the sizes at all
    assert peak < 20_000_000  # nothing proportional to the network's size was allocated


def test_build_verify_refuses_an_absurd_network(tmp_path, cli):
    path = _absurd(tmp_path, "tera", "[1000000, 1, 1]", "conv: conv2d(1000000, 1)")
    r = cli("build", "--verify", "-o", tmp_path / "out", path)
    assert r.returncode == 1
    assert (f"{path}: error: tera has 1,000,011,000,010 parameters; --verify refuses networks above "
            "400,000,000 (the static analysis does not need to run it)") in r.stderr


def test_layer_limit_is_exact(tmp_path, monkeypatch):
    # with the bound at 1,000: 499 x (conv, relu) + flatten + fc = 1,000 layers compile, one more pair does not
    import archspec.expand

    monkeypatch.setattr(archspec.expand, "MAX_MODULES", 1000)
    text = SMALL.replace("layers:\n", "layers:\n  - f:\n      - repeat: 499\n        body: ['conv2d(3, 1)', relu]\n")
    path = _write(tmp_path, "big.yaml", text.encode())
    c = compile_spec(path)
    assert c.analysis.totals.params == 499 * 12 + 7690
    text = text.replace("499", "500")
    path = _write(tmp_path, "too_big.yaml", text.encode())
    assert errors_of(path) == [(path, 9, 5, "the network has more than 1000 layers (modules and functional ops)")]


def test_a_hundred_thousand_repeats_are_analysed(tmp_path):
    # 10^5 repeats of a 1x1 conv: analysed statically in about two seconds, nothing allocated per weight
    text = SMALL.replace("layers:\n", "layers:\n  - f:\n      - repeat: 100000\n        body: ['conv2d(3, 1)']\n")
    path = _write(tmp_path, "huge.yaml", text.encode())
    c = compile_spec(path)
    assert c.analysis.totals.params == 100_000 * 12 + 7690
    assert c.analysis.totals.depth == 100_000 + 1


# --- the command line: exit codes and JSON errors --------------------------------------------------

def test_usage_errors_exit_2(cli):
    r = cli("check", "--input", "3x", "specs/googlenet.yaml")
    assert r.returncode == 2
    assert "archspec: error: argument --input: expected C x H x W such as 3x224x224, got '3x'" in r.stderr
    r = cli("check", "--format", "json", "--bogus", "specs/googlenet.yaml")
    assert r.returncode == 2
    assert json.loads(r.stderr) == {"error": {"stage": "usage", "message": "unrecognized arguments: --bogus",
                                              "file": None, "line": None, "column": None, "yaml_path": None,
                                              "node": None}}
    assert cli().returncode == 2


def test_spec_errors_exit_1_as_json_for_build(cli, tmp_path):
    r = cli("build", "--format=json", "-o", tmp_path / "out", "tests/hostile/key_int.yaml")
    assert r.returncode == 1
    first = json.loads(r.stderr.splitlines()[0])["error"]
    assert first == {"stage": "load", "file": "tests/hostile/key_int.yaml", "line": 7, "column": 5,
                     "yaml_path": "layers[0]", "node": None,
                     "message": "key '1' is not a string: YAML reads it as an integer (quote it, e.g. '1':, to use it as a name)"}
    assert not (tmp_path / "out").exists()


def test_an_internal_error_is_short_and_exits_3(monkeypatch, capsys):
    import archspec.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(archspec.pipeline, "compile_spec", broken)
    assert cli.main(["check", "specs/googlenet.yaml"]) == 3
    err = capsys.readouterr().err
    assert err == "archspec: internal error: ZeroDivisionError: a bug (run with --debug for the traceback)\n"
    assert cli.main(["check", "--format", "json", "specs/googlenet.yaml"]) == 3
    assert json.loads(capsys.readouterr().err)["error"]["stage"] == "internal"
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "check", "specs/googlenet.yaml"])


def test_control_characters_in_messages_are_escaped(tmp_path):
    # a string in a spec must not be able to forge an error line or drive the terminal
    text = SMALL.replace("  - flatten\n", '  - "a\\nspecs/x.yaml:1:1: error: forged\\e[2J": relu\n  - flatten\n')
    path = _write(tmp_path, "forge.yaml", text.encode())
    with pytest.raises(ArchspecError) as info:
        compile_spec(path)
    shown = info.value.format()
    assert info.value.message == ("'a\\nspecs/x.yaml:1:1: error: forged\\x1b[2J' is not a valid module name "
                                  "(letters, digits and _, not starting with a digit, not a Python keyword)")
    assert len(shown.splitlines()) == 4 and "\x1b" not in shown


def test_long_source_lines_are_shown_as_a_window(at_root):
    with pytest.raises(ArchspecError) as info:
        compile_spec("tests/hostile/deep_flow.yaml")
    lines = info.value.format().splitlines()
    assert lines[0] == "tests/hostile/deep_flow.yaml:6:1008: error: nesting deeper than 64 levels"
    assert lines[1] == "    6 | ..." + "[" * 120 + "..."
    assert lines[2].index("^") == lines[1].index("[") + 60


# --- nothing lost -----------------------------------------------------------------------------------

def _snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path):
    """A copy of two stock specs and their library, to build from and to damage."""
    root = tmp_path / "project"
    (root / "specs" / "lib").mkdir(parents=True)
    for name in ("specs/alexnet.yaml", "specs/googlenet.yaml", "specs/lib/basic.yaml"):
        shutil.copy(ROOT / name, root / name)
    return root


def test_check_and_failed_builds_write_nothing(project, cli):
    before = _snapshot(project)
    assert cli("check", "specs/alexnet.yaml", "--format", "json", cwd=project).returncode == 0
    broken = project / "specs" / "broken.yaml"
    broken.write_text((HOSTILE / "key_bool.yaml").read_text())
    before["specs/broken.yaml"] = (broken.read_bytes(), broken.stat().st_mtime_ns)
    r = cli("build", "specs/alexnet.yaml", "specs/broken.yaml", "-o", "out", cwd=project)
    assert r.returncode == 1 and "nothing was written" in r.stderr
    assert _snapshot(project) == before


def test_hand_edited_file_survives_a_build_without_force(project, cli):
    assert cli("build", "specs/alexnet.yaml", "-o", "out", cwd=project).returncode == 0
    target = project / "out" / "alexnet.py"
    edited = target.read_text().replace("class AlexNet(nn.Module):", "class AlexNet(nn.Module):  # tuned by hand")
    target.write_text(edited)
    r = cli("build", "specs/alexnet.yaml", "-o", "out", cwd=project)
    assert r.returncode == 1
    assert "out/alexnet.py was edited by hand; not overwritten (use --force to replace it)" in r.stderr
    assert target.read_text() == edited
    assert cli("build", "specs/alexnet.yaml", "-o", "out", "--force", cwd=project).returncode == 0
    assert "tuned by hand" not in target.read_text()


_SLOW_WRITE = """
import os, signal, sys
# Ctrl-C as in a terminal: a shell that runs the suite in the background ignores SIGINT, and its
# children inherit that (Python then installs no KeyboardInterrupt handler, and SIGINT does nothing)
signal.signal(signal.SIGINT, signal.default_int_handler)
real = os.fsync
def slow(fd):
    print("writing", file=sys.stderr, flush=True)  # tell the test the new text is being written
    sys.stdin.read()  # and wait for its signal (stdin stays open until then)
    real(fd)
os.fsync = slow
from archspec.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_build_leaves_the_previous_file(project, cli, sig):
    assert cli("build", "specs/alexnet.yaml", "-o", "out", cwd=project).returncode == 0
    target = project / "out" / "alexnet.py"
    previous = target.read_bytes()
    spec = project / "specs" / "alexnet.yaml"
    spec.write_text(spec.read_text().replace("dropout: float = 0.5", "dropout: float = 0.25"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITE, "build", "specs/alexnet.yaml", "-o", "out"],
                            cwd=project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # blocks until the build is inside the write, or has ended
    assert line == "writing\n", (line, proc.communicate())
    proc.send_signal(sig)
    proc.wait(timeout=60)  # stdin stays open until then: its end of file must not wake the child first
    out, err = proc.communicate()
    assert target.read_bytes() == previous
    leftovers = sorted(p.name for p in (project / "out").iterdir())
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and err.strip().endswith("archspec: interrupted")
        assert leftovers == ["alexnet.py"]  # the temporary file was removed
    else:
        assert proc.returncode == -signal.SIGKILL
        assert "alexnet.py" in leftovers  # a killed process cannot clean up its temporary file, but
        assert all(p.startswith(".archspec-") for p in leftovers if p != "alexnet.py")  # it is only that
    # the next build finishes the job
    assert cli("build", "specs/alexnet.yaml", "-o", "out", cwd=project).returncode == 0
    assert b"dropout: float = 0.25" in target.read_bytes()


# --- no code injection --------------------------------------------------------------------------------

_IMPORTS = {"collections", "typing", "torch", "torch.nn", "torch.nn.functional", "__future__"}
_STATEMENTS = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.Assign, ast.AnnAssign, ast.Expr,
               ast.Return, ast.If)
_BUILTINS = {"super", "isinstance", "range", "int", "float", "bool", "tuple", "len"}
_DUNDERS = {"__init__", "__annotations__", "__all__"}


def inert_problems(source: str) -> list:
    """What in a generated file is not the expected construct (empty when the file only defines a model).

    Allowed: imports of torch / collections / typing; class and function definitions whose bases are
    nn.Module; assignments, returns, ifs, docstrings and ``for NAME in range(...)``; calls of nn.*, F.*,
    torch.*, self.*, super(), namedtuple/isinstance/range, the file's own classes and functions and
    ``append`` on a list the file builds (``layers.append(...)``). No name is used that the
    file does not bind, no dunder but __init__/__annotations__/__all__, no decorator, no lambda.
    """
    tree = ast.parse(source)
    problems = []
    own = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    own |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    bound = set(own)
    lists = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.List)
             for t in n.targets if isinstance(t, ast.Name)}  # layers = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not isinstance(node, _STATEMENTS) and not _range_loop(node):
            problems.append(f"statement {type(node).__name__} at line {node.lineno}")
        if isinstance(node, ast.Import):
            problems += [f"import {a.name}" for a in node.names if a.name not in _IMPORTS]
        if isinstance(node, ast.ImportFrom) and node.module not in _IMPORTS:
            problems.append(f"from {node.module} import")
        if isinstance(node, (ast.Lambda, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            problems.append(f"{type(node).__name__} at line {node.lineno}")
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.decorator_list:
            problems.append(f"decorator on {node.name}")
        if isinstance(node, ast.ClassDef) and [ast.unparse(b) for b in node.bases] != ["nn.Module"] or (
                isinstance(node, ast.ClassDef) and node.keywords):
            problems.append(f"class {node.name} is not a plain nn.Module")
        if isinstance(node, ast.Name):
            if node.id.startswith("__") and node.id not in _DUNDERS:
                problems.append(f"name {node.id}")
            if isinstance(node.ctx, ast.Load) and node.id not in bound and node.id not in _BUILTINS:
                problems.append(f"unbound name {node.id} at line {node.lineno}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and node.attr not in _DUNDERS:
            problems.append(f"attribute {node.attr}")
        if isinstance(node, ast.Call):
            f = node.func
            root = f
            while isinstance(root, ast.Attribute):
                root = root.value
            ok = (isinstance(f, ast.Name) and (f.id in own or f.id in _BUILTINS or f.id == "namedtuple")) or (
                isinstance(f, ast.Attribute) and isinstance(root, ast.Name) and root.id in ("nn", "F", "torch", "self")) or (
                isinstance(f, ast.Attribute) and isinstance(f.value, ast.Call) and ast.unparse(f) == "super().__init__") or (
                isinstance(f, ast.Attribute) and f.attr == "append" and isinstance(f.value, ast.Name) and f.value.id in lists)
            if not ok:
                problems.append(f"call of {ast.unparse(f)} at line {node.lineno}")
    return problems


def _range_loop(node) -> bool:
    """``for NAME in range(...):`` with no else (a Sequential's list built as torchvision builds it)."""
    return isinstance(node, ast.For) and isinstance(node.target, ast.Name) and not node.orelse and \
        isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name) and node.iter.func.id == "range"


def test_the_inertness_check_can_fail():
    assert inert_problems("import os\nos.system('x')\n") == ["statement Expr at line 2"] or \
        "import os" in inert_problems("import os\nos.system('x')\n")
    bad = ("import torch\nfrom torch import nn\nclass M(nn.Module):\n    def f(self):\n"
           "        return __import__('os').system('x')\n")
    assert "name __import__" in inert_problems(bad)
    assert "call of eval at line 1" in inert_problems("x = eval('1')\n")
    assert inert_problems("from torch import nn\nlayers = []\nfor _ in range(2):\n    layers.append(nn.ReLU())\n") == []
    assert "statement For at line 1" in inert_problems("for _ in list(range(2)):\n    pass\n")
    assert "call of os.append at line 2" in inert_problems("os = 1\nos.append('x')\n")  # not a list the file builds
    assert "class M is not a plain nn.Module" in inert_problems("class M(object):\n    pass\n")


def test_every_generated_stock_module_is_inert(compiled):
    from archspec.generate import generate

    for name in ("specs/googlenet.yaml", "specs/inception_resnet_v2.yaml", "specs/resnet50.yaml"):
        assert inert_problems(generate(compiled(name))) == [], name


ATTACKS = [
    "\"\"\"; import os; os.system('echo pwned'); \"\"\"",
    "'''\nimport os\n'''",
    "\\\"\"\" + __import__('os').system('echo pwned') + \"\"\"\\",
    "\\x00\\u202e\\\\N{BELL}{__import__('os')}",
    "\n\nimport os\nos.system('echo pwned')\n#",
    "x\r\nimport os",
]


def _injected(place: str, attack: str) -> str:
    q = json.dumps(attack)  # a YAML double-quoted scalar
    spec = ("archspec: 1\nname: net\ninput: [3, 16, 16]\nnum_classes: 10\n"
            "blocks:\n  Unit:\n    args: {out: {type: int, doc: ARGDOC}}\n    doc: BLOCKDOC\n"
            "    layers:\n      - conv: conv2d(out, 3, padding=1)\n      - relu\n"
            "layers:\n  - u: Unit(4)\n  - pool: adaptive_avgpool2d(1)\n  - flatten\n  - fc: linear(num_classes)\n"
            "aux:\n  head:\n    from: u\n    loss_weight: 0.5\n    doc: AUXDOC\n    module: [flatten, 'linear(2)']\n")
    spec = spec.replace("ARGDOC", q if place == "arg doc" else '"channels"')
    spec = spec.replace("BLOCKDOC", q if place == "block doc" else '"a unit"')
    spec = spec.replace("AUXDOC", q if place == "aux doc" else '"a head"')
    if place == "description":
        spec = spec.replace("name: net\n", f"name: net\ndescription: {q}\n")
    return spec


@pytest.mark.parametrize("place", ["description", "block doc", "arg doc", "aux doc"])
def test_free_text_reaches_generated_code_only_as_inert_literals(tmp_path, place):
    from archspec.generate import generate

    generated = 0
    for i, attack in enumerate(ATTACKS):
        path = _write(tmp_path, f"attack{i}.yaml", _injected(place, attack).encode())
        try:
            source = generate(compile_spec(path))
        except ArchspecError:
            continue  # refused with a clean error is fine too
        generated += 1
        assert inert_problems(source) == [], (place, attack)
        namespace: dict = {}
        exec(compile(source, f"attack{i}.py", "exec"), namespace)  # it imports, and defines only the model
        assert sorted(k for k in namespace if not k.startswith("__")) == [
            "F", "Net", "NetOutputs", "Optional", "Tensor", "Union", "Unit", "loss", "namedtuple", "nn", "torch"]
    assert generated == len(ATTACKS)  # free text is kept (escaped), not refused


# uses F (functional relu and pooling), Tensor, namedtuple (an aux head) and a block class
RICH = ("archspec: 1\nname: net\ninput: [3, 16, 16]\nnum_classes: 10\nblocks:\n  Unit:\n    args: {out: int}\n"
        "    layers:\n      - conv: conv2d(out, 3, padding=1)\n      - relu\n      - maxpool2d(2)\n"
        "layers:\n  - u: Unit(4)\n  - flatten\n  - fc: linear(num_classes)\n"
        "aux:\n  head: {from: u, loss_weight: 0.5, module: [flatten, 'linear(2)']}\n")

NAME_ATTACKS = [
    # (where, the text of the spec) -- each must be refused, or generate a file that is inert and works
    ("model name", RICH.replace("name: net", "name: torch")),
    ("model name", RICH.replace("name: net", "name: nn")),
    ("model name", RICH.replace("name: net", "name: loss")),
    ("model name", RICH.replace("name: net", "name: unit")),
    ("class name", RICH.replace("name: net", "name: net\nclass_name: F")),
    ("class name", RICH.replace("name: net", "name: net\nclass_name: Tensor")),
    ("class name", RICH.replace("name: net", "name: net\nclass_name: namedtuple")),
    ("class name", RICH.replace("name: net", "name: net\nclass_name: Unit")),
    ("block name", SMALL.replace("layers:\n", "blocks:\n  torch:\n    layers: [relu]\nlayers:\n  - t: torch\n")),
    ("block name", SMALL.replace("layers:\n", "blocks:\n  nn:\n    layers: [relu]\nlayers:\n  - t: nn\n")),
    ("block name", SMALL.replace("layers:\n", "blocks:\n  Net:\n    layers: [relu]\nlayers:\n  - t: Net\n")),
    ("block name", SMALL.replace("layers:\n", "blocks:\n  NetOutputs:\n    layers: [relu]\nlayers:\n  - t: NetOutputs\n")),
    ("block name", SMALL.replace("layers:\n", "blocks:\n  super:\n    layers: [relu]\nlayers:\n  - t: super\n")),
    ("argument name", SMALL.replace("layers:\n", "blocks:\n  B:\n    args: {nn: int}\n    layers: [{conv: 'conv2d(nn, 1)'}]\nlayers:\n  - b: B(3)\n")),
    ("argument name", SMALL.replace("layers:\n", "blocks:\n  B:\n    args: {F: int = 1}\n    layers: [relu]\nlayers:\n  - b: B\n")),
    ("argument name", SMALL.replace("layers:\n", "blocks:\n  B:\n    args: {in_channels: int = 1}\n    layers: [relu]\nlayers:\n  - b: B\n")),
    ("argument name", SMALL.replace("layers:\n", "blocks:\n  B:\n    args: {torch: int = 1}\n    layers: [relu]\nlayers:\n  - b: B\n")),
    ("argument name", SMALL.replace("layers:\n", "args:\n  Tensor: int = 3\nlayers:\n")),
    ("module name", SMALL.replace("layers:\n", "layers:\n  - training: relu\n")),
    ("module name", SMALL.replace("layers:\n", "layers:\n  - torch: identity\n")),
    ("aux name", SMALL.replace("layers:\n", "layers:\n  - c: conv2d(3, 1)\n") +
     "aux:\n  logits: {from: c, loss_weight: 0.1, module: [flatten, 'linear(2)']}\n"),
    ("aux name", SMALL.replace("layers:\n", "layers:\n  - c: conv2d(3, 1)\n") +
     "aux:\n  aux_logits: {from: c, loss_weight: 0.1, module: [flatten, 'linear(2)']}\n"),
    ("outputs type", RICH + "outputs: {type: torch}\n"),
    ("outputs type", RICH + "outputs: {type: Unit}\n"),
    ("outputs type", RICH + "outputs: {type: head}\n"),
    ("outputs type", RICH + "outputs: {type: u}\n"),
    ("outputs field", RICH + "outputs: {fields: {logits: main, __class__: head}}\n"),
    ("outputs field", RICH + "outputs: {fields: {x: main, self: head}}\n"),
    ("outputs field", RICH + "outputs: {fields: {'a\"]); import os #': main, h: head}}\n"),
    ("number as string", SMALL.replace("num_classes: 10", "num_classes: \"10); import os #\"")),
    ("number as string", SMALL.replace("layers:\n", "args:\n  d: float = \"0.5); import os #\"\nlayers:\n")),
    ("number as string", SMALL.replace("layers:\n", "layers:\n  - d: dropout(\"0.5\")\n")),
    ("number as string", SMALL.replace("layers:\n", "args:\n  d: {type: float, default: \"0.5)\\nimport os\"}\nlayers:\n")),
    ("number as string", SMALL.replace("[3, 16, 16]", "[3, '16', 16]")),
]


@pytest.mark.parametrize("where,text", NAME_ATTACKS, ids=[f"{w}-{i}" for i, (w, _) in enumerate(NAME_ATTACKS)])
def test_names_are_validated_identifiers_or_refused(tmp_path, where, text):
    from archspec.generate import generate

    path = _write(tmp_path, "attack.yaml", text.encode())
    try:
        source = generate(compile_spec(path))
    except ArchspecError as exc:
        assert exc.loc is not None and exc.loc.line > 0, exc  # refused, at a place in the spec
        return
    assert inert_problems(source) == []
    # and the file works: it agrees with the analysis and the interpreter (a shadowed F or Tensor would not)
    from archspec.emit import class_name_of
    from archspec.verify import verify

    c = compile_spec(path)
    namespace: dict = {}
    exec(compile(source, "attack.py", "exec"), namespace)
    verify(c, namespace[class_name_of(c.resolved.spec)])
