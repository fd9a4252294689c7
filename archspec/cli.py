"""Command line: ``archspec check | build | diff | draw | schema | import``.

Exit status (errors.EXIT_*, the table in README.md and docs/cli.md): 0 success, 1 a spec error (for diff:
the networks differ), 2 a usage error (for diff: also a spec error), 3 an internal error, 130 interrupted.
Heavy imports happen inside the commands so that start-up stays fast and ``check``/``build``
never import torch.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from .errors import (EXIT_DIFFERENT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_SPEC, EXIT_TROUBLE, EXIT_USAGE,
                     ArchspecError, GenerateError, Loc, UsageError, flatten, printable)


_JSON_ERRORS = False  # set by main() when the command line asks for --format json


def _wants_json(argv: list) -> bool:
    """Whether errors should be JSON, read before argparse so that usage errors can be JSON too."""
    return any(a == "--format=json" for a in argv) or any(
        a == "--format" and b == "json" for a, b in zip(argv, argv[1:]))


def _json_error(stage: str, message: str) -> str:
    keys = ArchspecError(message).to_dict()
    keys["stage"] = stage
    return json.dumps({"error": keys})


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit 2 with usage text; keep that, in one place
        if _JSON_ERRORS:
            print(_json_error("usage", message), file=sys.stderr)
            raise SystemExit(EXIT_USAGE)
        self.print_usage(sys.stderr)
        print(f"archspec: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _input_shape(text: str):
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected C x H x W such as 3x224x224, got '{text}'")
    dims = tuple(int(v) for v in m.groups())
    if min(dims) < 1 or max(dims) > 1_000_000:
        raise argparse.ArgumentTypeError(f"sizes must be between 1 and 1000000, got '{text}'")
    return dims


def _positive(text: str) -> int:
    from .exprs import MAX_INT

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    if v > MAX_INT:  # the bound on every integer of a spec (docs/spec.md, limits)
        raise argparse.ArgumentTypeError(f"expected at most 10^15, got '{text}'")
    return v


def _depth(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{text}'") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{text}'")
    return v


def _draw_depth(text: str):
    return "auto" if text == "auto" else _depth(text)


def _memory_options(parser):
    m = parser.add_argument_group("memory (docs/cli.md#memory)")
    m.add_argument("--batch", type=_positive, metavar="N", help="memory at batch N: layer outputs and the inference peak")
    m.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), help="element type (default float32)")
    m.add_argument("--train", action="store_true", help="add what autograd keeps for backward and a training step's memory")
    m.add_argument("--optimizer", choices=("sgd", "sgd-momentum", "adam", "adamw"),
                   help="the training step's optimizer (default sgd; implies --train)")
    return m


def _memory_request(args) -> dict | None:
    """The memory options given on the command line (``archspec.memory.measure``'s arguments), or
    None when there are none."""
    if not (args.batch or args.dtype or args.train or args.optimizer or getattr(args, "device", None)):
        return None
    return {"batch": args.batch or 1, "dtype": args.dtype or "float32",
            "optimizer": args.optimizer or ("sgd" if args.train else None)}


def _costs(args):
    """A function compiled -> (memory, time estimate) when the command line asks for them, else None."""
    request = _memory_request(args)
    if request is None:
        return None
    from .memory import measure

    device = None
    if args.device:
        from .roofline import estimate, load_device

        device = load_device(args.device)
        if request["dtype"] not in device.peak_flops:
            raise UsageError(f"device profile {device.name} has no peak for {request['dtype']} "
                             f"(it lists {', '.join(device.peak_flops)})")
    return lambda c: (measure(c, **request),
                      estimate(c, device, request["batch"], request["dtype"]) if device is not None else None)


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    p = _Parser(prog="archspec", description="Architecture-spec compiler for deep vision networks.")
    p.add_argument("--version", action="version", version=f"archspec {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def common(sp, many=True):
        if many:
            sp.add_argument("specs", nargs="*", metavar="SPEC", help="spec files (default: every spec under specs/)")
        sp.add_argument("--input", type=_input_shape, metavar="CxHxW", help="override the input size, e.g. 3x299x299")
        sp.add_argument("--num-classes", type=_positive, metavar="N", help="override the number of classes")
        sp.add_argument("--format", choices=("text", "json"), default="text")
        # SUPPRESS: a subcommand's own default must not undo `archspec --debug COMMAND`
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    c = sub.add_parser("check", help="validate specs and print shapes, parameters and MACs")
    common(c)
    c.add_argument("--depth", type=_depth, default=3, metavar="N",
                   help="show modules down to N levels (default 3; 0: every level, as draw --depth 0)")
    _memory_options(c).add_argument("--device", metavar="PROFILE",
                                    help="roofline time estimate on a device profile: a YAML file or a shipped name")

    b = sub.add_parser("build", help="generate PyTorch modules from specs")
    common(b)
    b.add_argument("-o", "--output", default="generated", metavar="DIR", help="output directory (default generated/)")
    b.add_argument("--check", action="store_true", dest="check_only", help="write nothing; exit 1 if a file is stale or hand-edited")
    b.add_argument("--force", action="store_true", help="overwrite generated files that were edited by hand")
    b.add_argument("--verify", action="store_true", help="import the generated module; compare it with the analysis and the interpreter (needs torch)")
    b.add_argument("--deploy", action="store_true", help="generate the inference-only deploy module")

    for name, helptext in (("diff", "compare two specs"), ("draw", "draw a spec as DOT, SVG or Mermaid"),
                           ("schema", "print the JSON Schema of the spec language")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == "diff":
            sp.add_argument("a", metavar="A")
            sp.add_argument("b", metavar="B")
            sp.add_argument("--code", action="store_true", help="add a unified diff of the generated modules")
            sp.add_argument("--format", choices=("text", "json", "markdown"), default="text")
            _memory_options(sp)
        elif name == "draw":
            sp.add_argument("spec", metavar="SPEC")
            sp.add_argument("-o", "--output", required=True, metavar="FILE", help="output file: .dot, .svg or .mmd")
            sp.add_argument("--depth", type=_draw_depth, default=1, metavar="N|auto",
                            help="collapse blocks nested deeper than N (0: every op; auto: the shallowest depth that "
                                 "shows the most detail within 150 boxes and 70 rows)")
            sp.add_argument("--fuse", action="store_true", help="draw conv -> bn -> relu as one box")
    _import_parser(sub)
    return p


def _import_parser(sub) -> None:
    sp = sub.add_parser("import", help="write the spec of an existing PyTorch model (runs its Python; needs torch)")
    sp.add_argument("target", metavar="TARGET", help="package.module:callable (torchvision.models:googlenet) or "
                                                      "path/to/file.py:Name")
    sp.add_argument("-o", "--output", metavar="FILE", help="write the spec to FILE (default: standard output)")
    sp.add_argument("--input", type=_input_shape, metavar="CxHxW", help="the input size (default 3x224x224)")
    sp.add_argument("--name", metavar="N", help="the spec's name (default: from TARGET)")
    sp.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                    help="a keyword argument for TARGET, read as a Python literal (aux_logits=True); repeatable")
    sp.add_argument("--partial", action="store_true",
                    help="write what can be imported, each unsupported part an identity marked UNSUPPORTED (exit 1)")
    sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def resolve_specs(args: list) -> list:
    """Spec arguments as files. A name that is not a file here may name a stock spec
    (``googlenet``, ``inception_v3.yaml`` or ``specs/resnet50.yaml`` work from any directory);
    no argument means every spec under ./specs, else every stock spec."""
    from .pipeline import spec_files
    from .resources import stock_dir, stock_file

    if not args:
        return spec_files("specs") if os.path.isdir("specs") else spec_files(stock_dir())
    out = []
    for arg in args:
        stock = stock_file(arg) if not os.path.exists(arg) else None
        out.append(stock or arg)
    return out


def _specs(args) -> list:
    files = resolve_specs(list(args.specs))
    if not files:
        raise UsageError("no spec files given and none found under specs/")
    return files


def cmd_check(args) -> int:
    from .pipeline import compile_spec
    from .report import table, to_json

    results, failures, errors_json = [], 0, []
    costs = _costs(args)
    files = _specs(args)
    for file, shown in zip(files, args.specs or files):  # a spec is shown as given (a stock name too)
        try:
            c = compile_spec(file, args.input, args.num_classes)
            mem, est = costs(c) if costs else (None, None)
        except ArchspecError as exc:
            failures += 1
            _report_error(exc, args)
            errors_json.extend(e.to_dict() for e in flatten(exc))
            continue
        if args.format == "json":
            results.append(to_json(c, shown, mem, est))
        else:
            print(table(c, args.depth, shown, mem, est))
    if args.format == "json":
        payload = results[0] if len(results) == 1 and not failures and len(args.specs) <= 1 else results
        print(json.dumps(payload, indent=2))
    return EXIT_SPEC if failures else EXIT_OK


# --- build -------------------------------------------------------------------------------------

class _Out:
    """Per-file results: text lines as they happen, or one JSON list at the end (--format json)."""

    def __init__(self, args):
        self.json = getattr(args, "format", "text") == "json"
        self.records: list = []
        self.created: str | None = None  # the output directory, when this build made it

    def file(self, path: str, state: str, text: str, stream=None) -> None:
        if self.json:
            self.records.append({"file": path, "status": state})
        else:
            print(f"{printable(path)}: {text}", file=stream or sys.stdout)

    def note(self, text: str, stream=None) -> None:
        if not self.json:
            print(text, file=stream or sys.stdout)

    def close(self, code: int) -> int:
        if self.json:
            created = {"created": self.created} if self.created else {}
            print(json.dumps({"files": self.records, "ok": code == EXIT_OK, **created}, indent=2))
        return code


_STALE_TEXT = {"missing": "missing",
               "stale": "stale (the spec, archspec or the build flags changed; its first line has the command that rebuilds it)",
               "edited": "edited by hand (archspec build --force replaces it)"}


def cmd_build(args) -> int:
    """Generate every spec in memory; write nothing if one fails, and no file edited by hand."""
    from .build import plan, status

    out = _Out(args)
    if getattr(args, "verify", False):  # before anything is written: --verify cannot run without torch
        from .verify import require_torch

        require_torch()
    results, errors = plan(_specs(args), args.input, args.num_classes, getattr(args, "deploy", False), args.output)
    for exc in errors:
        _report_error(exc, args)
    if errors:
        out.note(f"archspec: {len(errors)} spec(s) failed; nothing was written", sys.stderr)
        return out.close(EXIT_SPEC)
    out_dir = args.output
    if _cannot_write(results, args, out):
        return out.close(EXIT_SPEC)
    states = [(c, os.path.join(out_dir, name), text, status(os.path.join(out_dir, name), text))
              for c, name, text, _ in results]
    if args.check_only:
        return out.close(_check_files(states, out))
    code = _write_files(states, args, out, {os.path.join(out_dir, name): n for _, name, _, n in results})
    if code == EXIT_OK and getattr(args, "verify", False):
        code = _verify_files(states, args, out)
    return out.close(code)


def _cannot_write(results: list, args, out: _Out) -> bool:
    """Report every reason the build's files cannot all be written (build.preflight), before any is."""
    from .build import preflight

    errors = preflight(results, args.output, writing=not args.check_only)
    for exc in errors:
        _report_error(exc, args)
    if errors and not args.check_only:
        out.note("archspec: nothing was written", sys.stderr)
    return bool(errors)


def _write_all(pairs: list) -> None:
    """Write every (path, text) or none (files.write_all); an OS failure is the environment's, not a bug."""
    from .files import write_all

    try:
        write_all(pairs)
    except OSError as exc:
        where = exc.filename or (pairs[0][0] if pairs else "")
        raise GenerateError(f"cannot write {where}: {exc.strerror or exc}; nothing was written") from None


def _check_files(states: list, out: _Out) -> int:
    """``build --check``: report every file that is not current."""
    bad = [(path, st) for _, path, _, st in states if st != "current"]
    for _, path, _, st in states:
        if st != "current":
            out.file(path, st, _STALE_TEXT[st], sys.stderr)
        elif out.json:
            out.file(path, st, "")
    if not bad:
        out.note(f"{len(states)} generated file(s) up to date")
    return EXIT_SPEC if bad else EXIT_OK


def _write_files(states: list, args, out: _Out, params: dict) -> int:
    """Write what is not current; ``params``: each file's module's parameter count, for its line."""
    edited = [path for _, path, _, st in states if st == "edited"]
    if edited and not args.force:
        for path in edited:
            _report_error(GenerateError(f"{path} was edited by hand; not overwritten (use --force to replace it)",
                                        Loc(path)), args)
        return EXIT_SPEC
    out_dir = os.path.dirname(states[0][1]) if states else None
    made = out_dir is not None and not os.path.isdir(out_dir)
    _write_all([(path, text) for _, path, text, st in states if st != "current"])  # all or none
    if made:  # never silently: `build googlenet` anywhere makes ./generated
        out.created = out_dir
        out.note(f"archspec: created {printable(os.path.join(out_dir, ''))} (the output directory; -o DIR writes elsewhere)")
    for _, path, text, st in states:
        state = "unchanged" if st == "current" else "written"
        out.file(path, state, f"{state} ({params[path]:,} params)")
    return EXIT_OK


_VERIFIED = ("verified (params, every module's output shape and MACs match the analysis; outputs, aux outputs, "
             "BatchNorm statistics and gradients match the interpreter in eval and training)")
_VERIFIED_DEPLOY = "verified (its eval output matches the interpreter)"


def _verify_files(states: list, args, out: _Out) -> int:
    """``build --verify``: each written module against the analysis and the interpreter."""
    from .verify import verify_file

    deploy = getattr(args, "deploy", False)
    failed = 0
    for compiled, path, _, _ in states:
        try:
            verify_file(compiled, path, deploy)
            out.file(path, "verified", _VERIFIED_DEPLOY if deploy else _VERIFIED)
        except ArchspecError as exc:
            failed += 1
            out.file(path, "differs", "differs from the analysis or the interpreter", sys.stderr)
            for e in flatten(exc):
                _report_error(e, args)
    return EXIT_SPEC if failed else EXIT_OK


# --- diff, draw, schema ------------------------------------------------------------------------

def cmd_diff(args) -> int:
    """``archspec diff A B``: 0 identical, 1 different, 2 trouble."""
    from .pipeline import diff_specs

    try:
        a, b = resolve_specs([args.a, args.b])  # a name may be a stock spec's
        d = diff_specs(a, b, code=getattr(args, "code", False))
        d.shown = (args.a, args.b)  # as given: a stock spec's name, not its installed path
        request = _memory_request(args)
        if request is not None:
            from .memory import measure

            d.memory = (measure(d.a, **request), measure(d.b, **request))
    except ArchspecError as exc:
        _report_error(exc, args)
        return EXIT_TROUBLE
    if args.format == "json":
        print(json.dumps(d.to_json(), indent=2))
    elif args.format == "markdown":
        print(d.markdown(), end="")
    else:
        print(d.text(), end="")
    return EXIT_OK if d.identical else EXIT_DIFFERENT


def cmd_draw(args) -> int:
    """``archspec draw SPEC -o FILE [--depth N|auto] [--fuse]``."""
    from .draw import FORMATS, render
    from .pipeline import compile_spec

    ext = os.path.splitext(args.output)[1].lower()
    if ext not in FORMATS:
        raise UsageError(f"cannot tell the format of '{args.output}': use a .dot, .svg or .mmd file name")
    _check_output(args.output)
    (spec,) = resolve_specs([args.spec])  # a name may be a stock spec's
    compiled = compile_spec(spec)
    text = render(compiled, FORMATS[ext], args.depth, getattr(args, "fuse", False))
    _write_all([(args.output, text)])
    return EXIT_OK


def _check_output(path: str) -> None:
    """One output file (draw's -o) that cannot be written is refused before any work."""
    from .files import directory_problem, length_problem, target_problem

    problem = directory_problem(os.path.dirname(path)) or target_problem(path) or length_problem(path)
    if problem:
        raise GenerateError(problem)


def cmd_schema(args) -> int:
    from .schema import schema_json

    print(schema_json())
    return EXIT_OK


def cmd_import(args) -> int:
    """``archspec import TARGET``: 0 written, 1 something could not be imported (``--partial``:
    written, with the unsupported parts marked), 2 usage (no torch, a bad TARGET or --arg)."""
    from .exprs import is_identifier

    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("archspec import builds and traces the model, which needs torch; it is not installed "
                         "(pip install 'archspec[torch]')") from None
    if args.name is not None and not (is_identifier(args.name) and not args.name.startswith("_")):
        raise UsageError(f"--name must be a Python identifier (letters, digits, _), got '{args.name}'")
    if args.output:
        _check_output(args.output)
    from .importer import import_target, problem_errors
    from .importer.target import parse_arg

    kwargs = dict(parse_arg(a) for a in args.arg)
    result = import_target(args.target, kwargs, args.input, args.name, args.partial)
    for exc in problem_errors(result.problems):
        _report_error(exc, args)
    if args.output:
        _write_all([(args.output, result.text)])
        print(f"{printable(args.output)}: written ({result.name}"
              f"{', incomplete: ' + str(len(result.problems)) + ' part(s) marked UNSUPPORTED' if result.problems else ''})",
              file=sys.stderr)
    else:
        sys.stdout.write(result.text)
    for note in result.notes:
        print(f"archspec: note: {note}", file=sys.stderr)
    return EXIT_SPEC if result.problems else EXIT_OK


def _report_error(exc: ArchspecError, args) -> None:
    if getattr(args, "format", "text") == "json":
        for e in flatten(exc):
            print(json.dumps({"error": e.to_dict()}), file=sys.stderr)
    else:
        print(exc.format(), file=sys.stderr)


COMMANDS = {"check": cmd_check, "build": cmd_build, "diff": cmd_diff, "draw": cmd_draw, "schema": cmd_schema,
            "import": cmd_import}


def main(argv=None) -> int:
    global _JSON_ERRORS
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    _JSON_ERRORS = _wants_json(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    as_json = getattr(args, "format", "text") == "json"
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(_json_error("usage", exc.message) if as_json else f"archspec: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except ArchspecError as exc:
        _report_error(exc, args)
        return EXIT_SPEC
    except KeyboardInterrupt:
        print(_json_error("interrupted", "interrupted") if as_json else "archspec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except RecursionError:  # a pathological input that slipped past every bound is still the input's fault
        message = "the spec is nested too deeply to process"
        print(_json_error("archspec", message) if as_json else f"archspec: error: {message}", file=sys.stderr)
        if args.debug:
            raise
        return EXIT_SPEC
    except Exception as exc:  # an archspec bug, not the user's: say so briefly
        if args.debug:
            raise
        message = f"internal error: {type(exc).__name__}: {exc}"
        print(_json_error("internal", message) if as_json else f"archspec: {message} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


def entry() -> None:
    # A short-lived process: the cyclic collector would rescan the objects that start-up imports
    # create, finding no garbage (12% of `archspec check`, docs/performance.md).
    import gc

    gc.disable()
    sys.exit(main())
