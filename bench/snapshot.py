"""Everything archspec shows a user, dumped into one directory, so that a refactoring can prove it
changes no output byte:

    python bench/snapshot.py /tmp/before          # on the old code
    python bench/snapshot.py /tmp/after           # on the new code
    python bench/snapshot.py --compare /tmp/before /tmp/after

It runs the command line in-process (``archspec.cli.main``) from the repository root and records,
for every stock spec, test spec and hostile spec: ``check`` (text and JSON, errors included),
``build`` and ``build --deploy`` (every generated file and what the command printed), ``draw``
(DOT and Mermaid at several depths, fused and not), ``diff`` (text, JSON and markdown) for
pairs that exercise every kind of change, and ``schema``. Each run also records its exit status.

String hashing is fixed (PYTHONHASHSEED=0): ``draw`` picks among equally long cluster paths in set
order (``draw._loose_heads``), so its DOT at depth 0 can differ between two processes otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import filecmp
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DIFF_PAIRS = [
    ("specs/googlenet_paper.yaml", "specs/googlenet.yaml"),
    ("specs/googlenet_paper.yaml", "specs/googlenet_factorized.yaml"),
    ("specs/googlenet.yaml", "specs/googlenet.yaml"),
    ("specs/alexnet.yaml", "specs/googlenet.yaml"),
    ("specs/inception_v2.yaml", "specs/inception_v3.yaml"),
    ("specs/inception_v3.yaml", "specs/inception_v4.yaml"),
    ("specs/inception_v4.yaml", "specs/inception_resnet_v2.yaml"),
    ("specs/resnet18.yaml", "specs/resnet50.yaml"),
    ("specs/resnet50.yaml", "specs/resnet152.yaml"),
    ("specs/vgg16.yaml", "specs/vgg16_bn.yaml"),
    ("tests/golden/diff/specs/mini.yaml", "tests/golden/diff/specs/mini_factorized.yaml"),
    ("tests/golden/diff/specs/mini.yaml", "tests/golden/diff/specs/mini_modern.yaml"),
    ("tests/golden/diff/specs/mini.yaml", "tests/golden/diff/specs/mini_same.yaml"),
    ("tests/golden/diff/specs/mini.yaml", "tests/golden/diff/specs/mini_wide.yaml"),
    ("tests/golden/diff/specs/mini.yaml", "tests/golden/diff/specs/broken.yaml"),
    ("tests/specs/ok/small_cnn.yaml", "tests/specs/ok/small_cnn_wide.yaml"),
]


def _yaml(directory: str) -> list:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / directory).glob("*.yaml"))


def run(out: Path, name: str, argv: list) -> None:
    """Run ``archspec ARGV``; write its stdout, stderr and exit status to ``out/name``."""
    from archspec.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    text = f"$ archspec {' '.join(argv)}\nexit {code}\n--- stdout\n{stdout.getvalue()}--- stderr\n{stderr.getvalue()}"
    (out / name).write_text(text.replace(str(out), "OUT"), encoding="utf-8")


def snapshot(out: Path) -> None:
    os.chdir(ROOT)
    out.mkdir(parents=True, exist_ok=True)
    stock, ok = _yaml("specs"), _yaml("tests/specs/ok") + _yaml("tests/golden/diff/specs")
    bad = _yaml("tests/specs/broken") + _yaml("tests/hostile")
    for sub in ("check", "build", "deploy", "draw", "diff"):
        (out / sub).mkdir(exist_ok=True)
    for spec in stock + ok + bad:
        key = spec.replace("/", "__")
        run(out / "check", f"{key}.txt", ["check", spec])
        run(out / "check", f"{key}.json", ["check", spec, "--format", "json"])
        for sub, extra in (("build", []), ("deploy", ["--deploy"])):
            target = out / sub / key
            run(out / sub, f"{key}.log", ["build", spec, "-o", str(target), *extra])
    for spec in stock + ok:
        key = spec.replace("/", "__")
        run(out / "check", f"{key}.depth1.txt", ["check", spec, "--depth", "1"])
        for depth in ("0", "1", "2", "auto"):
            for ext in ("dot", "mmd"):
                for fuse in ([], ["--fuse"]):
                    name = f"{key}.d{depth}{'.fuse' if fuse else ''}.{ext}"
                    run(out / "draw", name + ".log", ["draw", spec, "-o", str(out / "draw" / name), "--depth", depth, *fuse])
    for a, b in DIFF_PAIRS:
        key = f"{Path(a).stem}__{Path(b).stem}"
        for fmt in ("text", "json", "markdown"):
            run(out / "diff", f"{key}.{fmt}", ["diff", a, b, "--format", fmt])
        run(out / "diff", f"{key}.code.text", ["diff", a, b, "--code"])
    run(out, "build_check.txt", ["build", "--check"])
    run(out, "schema.json", ["schema"])


def compare(a: Path, b: Path) -> int:
    """Print every file that differs or exists on one side only; 0 when the two are identical."""
    bad = 0
    files = 0
    for root, dirs, names in os.walk(a):
        dirs.sort()
        rel = Path(root).relative_to(a)
        for n in sorted(names):
            files += 1
            other = b / rel / n
            if not other.exists():
                print(f"only in {a}: {rel / n}")
                bad += 1
            elif not filecmp.cmp(Path(root) / n, other, shallow=False):
                print(f"differs: {rel / n}")
                bad += 1
    for root, _, names in os.walk(b):
        rel = Path(root).relative_to(b)
        for n in names:
            if not (a / rel / n).exists():
                print(f"only in {b}: {rel / n}")
                bad += 1
    print(f"{files} files compared, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--compare", action="store_true", help="compare two snapshot directories")
    args = p.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":  # see the module docstring
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    if args.compare:
        sys.exit(compare(Path(args.dirs[0]), Path(args.dirs[1])))
    snapshot(Path(args.dirs[0]).resolve())
