"""``archspec import TARGET``: the callable a TARGET names, and the model it builds.

TARGET is ``package.module:callable`` (``torchvision.models:googlenet``; a dotted callable such as
``torchvision.models:resnet.resnet50`` works too) or ``path/to/file.py:Name``. Keyword arguments
come from ``--arg key=value``: the value is read as a Python literal (``True``, ``0.2``,
``(1, 3)``, ``'x'``) with ``ast.literal_eval``, never evaluated; a bare word that is no literal is
a string (``--arg model_name=inception_v4`` for ``timm:create_model``).

Importing a target runs its Python code, as any PyTorch tool does. While the model is built, the
arguments each nn.Module's constructor was called with are recorded (a profile hook on
``__init__`` calls), so that the blocks of the spec can name their arguments as the code does.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
import weakref

from ..errors import ImportModelError, UsageError


def parse_arg(text: str) -> tuple:
    """``key=value`` -> (key, value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise UsageError(f"--arg takes key=value with a Python name as the key, got '{text}'")
    try:
        return key, ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return key, raw.strip()


def split_target(target: str) -> tuple:
    """(module name or file, attribute path)."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr or not all(p.isidentifier() for p in attr.split(".")):
        raise UsageError(f"TARGET must be package.module:callable or path/to/file.py:Name, got '{target}'")
    return where, attr


def _purge(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


_TV_LIB = None


def torchvision_stubs() -> None:
    """torchvision's compiled ops may not load beside a CPU torch wheel (they link against another
    build), and ``import torchvision`` then fails on "operator torchvision::nms does not exist".
    Classification models never call those ops: defining their two schemas lets the import
    succeed (tests/conftest.py does the same)."""
    global _TV_LIB
    import torch

    try:
        _TV_LIB = torch.library.Library("torchvision", "DEF")
        _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    except RuntimeError:
        pass  # defined already


def import_module(name: str):
    """``importlib.import_module``, once more after the torchvision stubs when that is the trouble."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(f"no module named '{exc.name}' (TARGET is package.module:callable or file.py:Name)") \
                from None
        raise _failed(exc, f"importing {name}") from None
    except Exception as exc:  # the target's own code
        if "torchvision::" not in str(exc):
            raise _failed(exc, f"importing {name}") from None
    _purge("torchvision")
    torchvision_stubs()
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise _failed(exc, f"importing {name}") from None


def load_file(path: str):
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    name = "_archspec_import_" + "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # its own imports of files beside it work, as when it is run
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if "torchvision::" not in str(exc):
            raise _failed(exc, f"running {path}") from None
        _purge("torchvision")
        torchvision_stubs()
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def resolve(target: str):
    """The callable TARGET names."""
    where, attr = split_target(target)
    is_file = where.endswith(".py") or os.sep in where or "/" in where
    obj = load_file(where) if is_file else import_module(where)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"'{where}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"'{target}' is not callable")
    return obj


def _failed(exc: BaseException, doing: str) -> ImportModelError:
    from .trace import user_frame

    text = " ".join(str(exc).split())[:300]
    return ImportModelError(f"{doing} raised {type(exc).__name__}: {text}", user_frame(exc.__traceback__))


def build(fn, kwargs: dict, target: str):
    """Call ``fn(**kwargs)`` -> (model, records: id(module) -> (constructor arguments, defaults))."""
    import torch.nn as nn

    records = weakref.WeakKeyDictionary()  # a module dropped while building frees its entry

    def profile(frame, event, arg):
        if event != "call" or frame.f_code.co_name != "__init__":
            return
        this = frame.f_locals.get("self")
        if isinstance(this, nn.Module) and this not in records:  # the first __init__: the class's own
            records[this] = _arguments(frame, this)

    old = sys.getprofile()
    if old is None:  # another profiler keeps its hook: the arguments are then not recorded
        sys.setprofile(profile)
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        if exc.__traceback__.tb_next is not None:
            raise _failed(exc, f"building {target}") from None  # raised inside the target's code
        raise UsageError(f"{target}: {exc}") from None  # the call itself: arguments it does not take
    except Exception as exc:
        raise _failed(exc, f"building {target}") from None
    finally:
        if old is None:
            sys.setprofile(None)
    if not isinstance(model, nn.Module):
        raise UsageError(f"{target} returned a {type(model).__name__}, not an nn.Module")
    return model, {id(m): r for m, r in records.items()}


def _arguments(frame, module) -> tuple:
    """The literal arguments an __init__ frame was called with, and its parameters' defaults."""
    info = inspect.getargvalues(frame)
    values = {n: info.locals.get(n) for n in info.args[1:]}
    if info.keywords:
        values.update(info.locals.get(info.keywords) or {})
    try:
        sig = inspect.signature(type(module).__init__)
        defaults = {p.name: p.default for p in sig.parameters.values() if p.default is not p.empty}
    except (TypeError, ValueError):
        defaults = {}
    keep = (bool, int, float, str, tuple, list, type(None))
    found = {k: v for k, v in values.items() if isinstance(v, keep)}
    for v in values.values():  # a configuration object (torchvision's MBConvConfig): its fields too
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            for k, x in vars(v).items():
                if isinstance(x, keep) and k not in found and not k.startswith("_"):
                    found[k] = x
    return found, {k: v for k, v in defaults.items() if isinstance(v, keep)}
