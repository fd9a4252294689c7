"""The operating system and the environment: every failure a located error (exit 1) or a usage
error (exit 2), never an internal one; nothing written unless every output can be; reads bounded;
file names shown escaped (issue 10, classes 5 to 8).

The cases that are spec files live in tests/hostile/ (use_nul, extends_nul, line_separator_comment,
paragraph_separator, next_line, transform_huge_stack); these are the ones that need a file system,
a FIFO, a device or a fake Graphviz. Commands run in-process (``cli.main``) from a temporary
directory, so messages name files as a user typed them.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys

import pytest

import importlib

from archspec import cli, draw, files
from archspec.errors import ArchspecError, flatten
from archspec.pipeline import compile_spec

from conftest import ROOT

load = importlib.import_module("archspec.load")  # the package exports a function of that name

SPEC = "archspec: 1\nname: {name}\ninput: [3, 16, 16]\nnum_classes: 10\nlayers:\n  - flatten\n  - fc: linear(num_classes)\n"
WRITTEN = "out/{name}.py: written (7,690 params)\n"
CREATED = "archspec: created out/ (the output directory; -o DIR writes elsewhere)\n"


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A temporary working directory holding net.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_text(SPEC.format(name="net"))
    return tmp_path


def run(capsys, *argv) -> tuple:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def errors_of(path: str) -> list:
    with pytest.raises(ArchspecError) as info:
        compile_spec(path)
    return [(e.loc.file, e.loc.line, e.loc.col, e.message) for e in flatten(info.value)]


def tree(directory) -> list:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --- reading: only regular files, at most the limit plus one byte ----------------------------------

def test_a_device_is_refused_before_a_byte_is_read(here, capsys):
    assert errors_of("/dev/zero") == [("/dev/zero", 0, 0, "/dev/zero is a character device, not a spec file")]
    assert run(capsys, "check", "/dev/zero") == (1, "", "/dev/zero: error: /dev/zero is a character device, not a spec file\n")


def test_use_of_a_fifo_is_refused_without_waiting_for_a_writer(here):
    os.mkfifo(here / "lib.yaml")
    (here / "net.yaml").write_text(SPEC.format(name="net") + "use: [lib.yaml]\n")
    # a subprocess, so that a regression hangs one child (killed after 60 s), not the suite
    r = subprocess.run([sys.executable, "-m", "archspec", "check", "net.yaml"], cwd=here, capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.splitlines()[0] == "net.yaml:8:7: error: lib.yaml is a named pipe (FIFO), not a spec file"


def test_a_spec_that_is_a_fifo_or_a_socket(here):
    import socket

    os.mkfifo(here / "pipe.yaml")
    assert errors_of("pipe.yaml") == [("pipe.yaml", 0, 0, "pipe.yaml is a named pipe (FIFO), not a spec file")]
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind("sock.yaml")
        assert errors_of("sock.yaml") == [("sock.yaml", 0, 0, "sock.yaml is a socket, not a spec file")]
    finally:
        sock.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_file_longer_than_its_size_says_is_read_to_the_limit_plus_one_byte(here, monkeypatch):
    # /proc files say they are empty; only reading finds out how long they are
    assert os.stat("/proc/self/status").st_size == 0
    monkeypatch.setattr(load, "MAX_FILE_BYTES", 100)
    reads = []
    real = os.read
    monkeypatch.setattr(files.os, "read", lambda fd, n: reads.append(n) or real(fd, n))
    assert errors_of("/proc/self/status") == [
        ("/proc/self/status", 0, 0, "/proc/self/status is more than 100 bytes; specs are limited to 100 bytes")]
    assert reads == [101]


def test_read_bounded_reads_a_regular_file_whole():
    data = (ROOT / "specs" / "alexnet.yaml").read_bytes()
    assert files.read_bounded(str(ROOT / "specs" / "alexnet.yaml"), len(data)) == data
    with pytest.raises(files.TooLarge) as info:
        files.read_bounded(str(ROOT / "specs" / "alexnet.yaml"), len(data) - 1)
    assert info.value.size == len(data)


def test_the_source_line_is_counted_as_editors_count(here):
    # a lone CR ends a line for YAML and for editors alike; U+2028 is refused, shown on its editor line
    (here / "cr.yaml").write_bytes(b"archspec: 1\rname: net\rinput: [3, 16, 16]\rnum_classes: 10\rlayers: [flatten, 'fc: linear(x)']\r")
    (here / "ls.yaml").write_text("archspec: 1\n# a\u2028b\nname: net\n", encoding="utf-8")
    for name, head, source in [
        ("cr.yaml", "cr.yaml:5:21: error: ", "    5 | layers: [flatten, 'fc: linear(x)']"),
        ("ls.yaml", "ls.yaml:2:4: error: U+2028 (LINE SEPARATOR) is a line break in YAML", "    2 | # a\\u2028b"),
    ]:
        with pytest.raises(ArchspecError) as info:
            compile_spec(name)
        lines = flatten(info.value)[0].format().splitlines()
        assert lines[0].startswith(head) and source in lines


# --- build: nothing is written unless every output can be ------------------------------------------

def test_output_directory_is_a_dangling_symlink(here, capsys):
    os.symlink("nowhere/x", "dangling")
    assert run(capsys, "build", "-o", "dangling", "net.yaml") == (
        1, "", "error: dangling is a symbolic link to nowhere/x, which does not exist\narchspec: nothing was written\n")
    assert tree(here) == ["dangling", "net.yaml"]


def test_output_directory_below_a_file(here, capsys):
    (here / "file").write_text("x")
    assert run(capsys, "build", "-o", "file/sub", "net.yaml") == (
        1, "", "error: cannot create directory file/sub: file is not a directory\narchspec: nothing was written\n")
    assert run(capsys, "build", "-o", "file", "net.yaml") == (
        1, "", "error: output path file exists and is not a directory\narchspec: nothing was written\n")
    assert tree(here) == ["file", "net.yaml"]


def test_read_only_output_directory(here, capsys, monkeypatch):
    # root writes anywhere, so the refusal is simulated where the test runs as root (as it does here)
    (here / "ro").mkdir()
    real = files.tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if os.path.abspath(dir) == str(here / "ro"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    assert run(capsys, "build", "-o", "ro", "net.yaml") == (
        1, "", "error: cannot write into ro: Permission denied\narchspec: nothing was written\n")
    assert run(capsys, "build", "-o", "ro/deeper/out", "net.yaml")[2].startswith("error: cannot write into ro: ")
    assert tree(here) == ["net.yaml", "ro"]


def test_read_only_output_directory_for_real(here, capsys):
    """No simulation: a directory mode 555, or, as root (whom file modes do not stop), sysfs, which
    refuses new files to everyone."""
    target = "/sys"
    if os.geteuid() != 0:
        target = "ro"
        (here / "ro").mkdir()
        os.chmod(here / "ro", 0o555)
    assert run(capsys, "build", "-o", target, "net.yaml") == (
        1, "", f"error: cannot write into {target}: Permission denied\narchspec: nothing was written\n")
    assert run(capsys, "build", "-o", f"{target}/deeper", "net.yaml")[:2] == (1, "")
    assert not os.path.exists(os.path.join(target, "net.py"))


@pytest.mark.parametrize("make,kind", [(os.mkdir, "a directory"), (os.mkfifo, "a named pipe (FIFO)")])
def test_a_directory_or_fifo_where_the_module_goes(here, capsys, make, kind):
    (here / "out").mkdir()
    make(here / "out" / "net.py")
    message = f"error: out/net.py is {kind}, not a file; archspec does not replace it\n"
    assert run(capsys, "build", "-o", "out", "net.yaml") == (1, "", message + "archspec: nothing was written\n")
    assert run(capsys, "build", "--check", "-o", "out", "net.yaml") == (1, "", message)  # and --check does not block
    assert tree(here) == ["net.yaml", "out", "out/net.py"]


def test_a_name_too_long_for_the_file_system_is_found_before_any_file_is_written(here, capsys):
    name = "n" * 300
    (here / "a.yaml").write_text(SPEC.format(name="a"))
    (here / "long.yaml").write_text(SPEC.format(name=name))
    limit = os.pathconf(here, "PC_NAME_MAX")
    code, out, err = run(capsys, "build", "-o", "out", "a.yaml", "long.yaml")
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == (f"long.yaml:2:7: error: the file name {'n' * 20}...{'n' * 17}.py is 303 bytes long; "
                                   f"the file system allows {limit} (shorten the spec's name)")
    assert err.splitlines()[-1] == "archspec: nothing was written"
    assert tree(here) == ["a.yaml", "long.yaml", "net.yaml"]  # a.py was not written first
    code, out, err = run(capsys, "build", "-o", "o" * 300, "a.yaml")  # the output directory's name
    assert (code, err) == (1, f"error: the file name {'o' * 20}...{'o' * 20} is 300 bytes long; the file system "
                              f"allows {limit}\narchspec: nothing was written\n")


VARIANT = "archspec: 1\nextends: parent.yaml\nargs:\n  p: float = 0.25\n"


def test_a_variant_that_inherits_its_parents_name_is_a_clash(here, capsys):
    (here / "parent.yaml").write_text(SPEC.format(name="net").replace("  - flatten\n", "  - flatten\n  - drop: dropout(p)\n")
                                      + "args:\n  p: float = 0.5\n")
    (here / "variant.yaml").write_text(VARIANT)
    message = ("variant.yaml: error: parent.yaml and variant.yaml would both write out/net.py; variant.yaml takes "
               "the name 'net' from the spec it extends: give it a name: of its own\n")
    assert run(capsys, "build", "-o", "out", "parent.yaml", "variant.yaml") == (
        1, "", message + "archspec: nothing was written\n")
    assert not (here / "out").exists()
    assert run(capsys, "build", "--check", "-o", "out", "parent.yaml", "variant.yaml") == (1, "", message)
    # with a name of its own, both are built and --check passes
    (here / "variant.yaml").write_text(VARIANT + "name: net_small\n")
    assert run(capsys, "build", "-o", "out", "parent.yaml", "variant.yaml") == (
        0, CREATED + WRITTEN.format(name="net") + WRITTEN.format(name="net_small"), "")
    assert run(capsys, "build", "--check", "-o", "out", "parent.yaml", "variant.yaml") == (
        0, "2 generated file(s) up to date\n", "")


def test_names_that_differ_only_in_case_clash(here, capsys):
    (here / "big.yaml").write_text(SPEC.format(name="Net"))
    code, out, err = run(capsys, "build", "-o", "out", "net.yaml", "big.yaml")
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == ("big.yaml:2:7: error: net.yaml and big.yaml would write out/net.py and out/Net.py, "
                                   "one file where case is ignored (macOS, Windows); give one of them another name:")


def test_a_spec_named_twice_is_built_once(here, capsys):
    assert run(capsys, "build", "-o", "out", "net.yaml", "./net.yaml", str(here / "net.yaml")) == (
        0, CREATED + WRITTEN.format(name="net"), "")


def test_a_failed_write_leaves_every_file_as_it_was(here, capsys, monkeypatch):
    (here / "b.yaml").write_text(SPEC.format(name="b"))
    assert run(capsys, "build", "-o", "out", "net.yaml", "b.yaml")[0] == 0
    before = {p: (here / "out" / p).read_bytes() for p in ("net.py", "b.py")}
    for name in ("net", "b"):
        (here / f"{name}.yaml").write_text(SPEC.format(name=name).replace("[3, 16, 16]", "[3, 8, 8]"))
    real, staged = files._stage, []

    def disk_full_at_the_second(path, text):
        if staged:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        staged.append(path)
        return real(path, text)

    monkeypatch.setattr(files, "_stage", disk_full_at_the_second)
    assert run(capsys, "build", "-o", "out", "net.yaml", "b.yaml") == (
        1, "", "error: cannot write out/b.py: No space left on device; nothing was written\n")
    assert {p: (here / "out" / p).read_bytes() for p in ("net.py", "b.py")} == before
    assert tree(here / "out") == ["b.py", "net.py"]  # no temporary file left


def test_a_failed_write_removes_the_directories_it_made(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_stage", lambda path, text: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        files.write_all([(str(tmp_path / "a" / "b" / "x.py"), "x")])
    assert tree(tmp_path) == []


# --- file names are shown escaped -------------------------------------------------------------------

ESC_NAME = "e\x1b[2Jx.yaml"  # clears the screen when printed raw
BAD_NAME = os.fsdecode(b"bad\xff.yaml")  # not UTF-8: a surrogate in Python, unprintable as it is


def test_file_names_with_escapes_or_undecodable_bytes_are_shown_escaped(here, capsys):
    for name in (ESC_NAME, BAD_NAME):
        (here / name).write_text(SPEC.format(name="net"))
    code, out, err = run(capsys, "check", ESC_NAME, BAD_NAME)
    assert (code, err) == (0, "")
    assert "net  (e\\x1b[2Jx.yaml)" in out.splitlines() and "net  (bad\\udcff.yaml)" in out.splitlines()
    code, out, _ = run(capsys, "diff", ESC_NAME, BAD_NAME)
    assert code == 0 and out.splitlines()[:2] == ["A: net  (e\\x1b[2Jx.yaml)", "B: net  (bad\\udcff.yaml)"]
    code, out, _ = run(capsys, "diff", "--format", "markdown", ESC_NAME, BAD_NAME)
    assert out.splitlines()[2] == "A: `e\\x1b[2Jx.yaml`, B: `bad\\udcff.yaml`"
    assert run(capsys, "build", "-o", "out", BAD_NAME) == (0, CREATED + WRITTEN.format(name="net"), "")
    assert (here / "out" / "net.py").read_text().splitlines()[0] == (
        "# Generated by archspec 0.1.0 from bad?.yaml. Do not edit: run `archspec build -o out bad?.yaml`.")
    (here / BAD_NAME).write_text("archspec: 1\nname: [\n")
    code, out, err = run(capsys, "check", BAD_NAME)
    assert code == 1 and err.startswith("bad\\udcff.yaml:3:1: error: invalid YAML")


def test_undecodable_file_names_on_a_strict_terminal(here):
    # a UTF-8 terminal that refuses surrogates: the escaped name is plain ASCII
    (here / BAD_NAME).write_text(SPEC.format(name="net"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8:strict")
    r = subprocess.run([sys.executable, "-m", "archspec", "build", "-o", "out", os.fsencode(BAD_NAME)], cwd=here,
                       capture_output=True, text=True, env=env, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, CREATED + WRITTEN.format(name="net"), "")


def test_an_output_path_with_a_newline_stays_in_the_header_comment(here, capsys):
    assert run(capsys, "build", "-o", "o\nimport os #", "net.yaml")[0] == 0
    lines = (here / "o\nimport os #" / "net.py").read_text().splitlines()
    assert lines[0] == ("# Generated by archspec 0.1.0 from net.yaml. Do not edit: run "
                        "`archspec build -o 'o?import os #' net.yaml`.")
    assert lines[1].startswith("# archspec-sha256: ") and not any(line.startswith("import os") for line in lines)


def test_build_lines_escape_the_output_path(here, capsys):
    assert run(capsys, "build", "-o", "out\x1b[31m", "net.yaml") == (
        0, CREATED.replace("out/", "out\\x1b[31m/") + "out\\x1b[31m/net.py: written (7,690 params)\n", "")


# --- draw: Graphviz missing, crashing, slow or greedy --------------------------------------------------

SLEEP = shutil.which("sleep")  # found before a test narrows PATH
INSTEAD = "write .dot or .mmd instead, or draw fewer boxes (a smaller --depth)"


@pytest.fixture
def fake_dot(here, monkeypatch):
    """fake_dot(script): a `dot` on PATH that runs the shell script."""
    (here / "bin").mkdir()

    def make(body: str, shebang: str = "#!/bin/sh\n"):
        path = here / "bin" / "dot"
        path.write_text(shebang + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    monkeypatch.setenv("PATH", str(here / "bin"))
    return make


def test_dot_missing_is_a_usage_error(here, capsys, fake_dot):
    assert run(capsys, "draw", "net.yaml", "-o", "n.svg") == (
        2, "", "archspec: error: SVG output needs Graphviz's 'dot' program (Debian/Ubuntu: apt-get install graphviz); "
               "write .dot or .mmd instead\n")


def test_dot_failing(here, capsys, fake_dot):
    fake_dot("echo 'Error: <stdin>: syntax error in line 1' >&2\nexit 1\n")
    assert run(capsys, "draw", "net.yaml", "-o", "n.svg") == (
        1, "", f"error: Graphviz's dot failed with exit status 1: Error: <stdin>: syntax error in line 1; {INSTEAD}\n")
    assert not (here / "n.svg").exists()


def test_dot_crashing(here, capsys, fake_dot):
    fake_dot("echo 'dot: out of memory' >&2\nkill -SEGV $$\n")
    assert run(capsys, "draw", "net.yaml", "-o", "n.svg") == (
        1, "", f"error: Graphviz's dot was killed by SIGSEGV: dot: out of memory (it may use 1024 MiB and 60 s); {INSTEAD}\n")


def test_dot_that_cannot_start(here, capsys, fake_dot):
    exe = fake_dot("\x7fELF garbage", shebang="")
    assert run(capsys, "draw", "net.yaml", "-o", "n.svg") == (1, "", f"error: cannot run Graphviz's dot ({exe}): Exec format error\n")


def test_dot_runs_with_bounded_memory_and_cpu(here, capsys, fake_dot):
    fake_dot("echo \"<svg>$(ulimit -v) $(ulimit -t)</svg>\"\n")
    assert run(capsys, "draw", "net.yaml", "-o", "n.svg")[0] == 0
    assert (here / "n.svg").read_text().endswith(f"<svg>{draw.DOT_MEMORY // 1024} {draw.DOT_SECONDS}</svg>\n")


def test_dot_out_of_memory(here, capsys, fake_dot):
    # a real allocation past the limit: 2 GiB in a process allowed 1 GiB of address space
    fake_dot("b = bytearray(2 << 30)\n", shebang=f"#!{sys.executable}\n")
    assert run(capsys, "draw", "net.yaml", "-o", "n.svg") == (
        1, "", f"error: Graphviz's dot failed with exit status 1: MemoryError; {INSTEAD}\n")


def test_dot_that_hangs_is_stopped(here, capsys, fake_dot, monkeypatch):
    fake_dot(f"exec {SLEEP} 600\n")
    monkeypatch.setattr(draw, "DOT_SECONDS", 1)
    assert run(capsys, "draw", "net.yaml", "-o", "n.svg") == (
        1, "", f"error: Graphviz's dot ran for more than 1 s and was stopped; {INSTEAD}\n")


def test_draw_output_that_cannot_be_written(here, capsys):
    (here / "file").write_text("x")
    (here / "dir.dot").mkdir()
    assert run(capsys, "draw", "net.yaml", "-o", "file/n.dot") == (1, "", "error: output path file exists and is not a directory\n")
    assert run(capsys, "draw", "net.yaml", "-o", "dir.dot") == (
        1, "", "error: dir.dot is a directory, not a file; archspec does not replace it\n")
    assert run(capsys, "draw", "net.yaml", "-o", "sub/n.dot")[0] == 0  # a missing directory is made
