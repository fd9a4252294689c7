"""Shared fixtures: paths, the reference file, a CLI runner and an importable torchvision."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
REFERENCE = ROOT / "tests" / "reference" / "reference.json"

# torch on one thread, here and in every process a test starts (read when torch is imported). The
# tests run small forward passes; with two threads on a 2-core machine that other work shares, each
# op waits for the busy core and forward passes ran 3-5x slower than on one thread (resnet152,
# batch 2: 2.0-3.5 s against 0.8-0.9 s). An explicit OMP_NUM_THREADS wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def reference() -> dict:
    """Facts measured from the reference implementations (tests/reference/README.md)."""
    return json.loads(REFERENCE.read_text())["models"]


def run_cli(*args, cwd=None, env=None, input=None) -> subprocess.CompletedProcess:
    """Run ``python -m archspec ARGS`` in a subprocess; returns the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONPATH", str(ROOT))
    return subprocess.run([sys.executable, "-m", "archspec", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=full_env, input=input, timeout=600)


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(scope="session")
def compiled():
    """Compile a spec once per session: compiled("specs/googlenet.yaml")."""
    from archspec.pipeline import compile_spec

    cache = {}

    def get(path: str):
        if path not in cache:
            cache[path] = compile_spec(str(ROOT / path) if not os.path.isabs(path) else path)
        return cache[path]

    return get


def randomise_batchnorm(model, calibrate=None, weight=(0.5, 4.0), bias=1.0) -> None:
    """BatchNorm statistics and affine parameters away from 0/1, so that eval-mode BatchNorm is not
    the identity and a misplaced or missing one shows in the outputs. The affine values are drawn
    wide (scale 0.5-4, shift +-1), so that activations cross every threshold.

    With ``calibrate`` (an input batch), the running statistics are first measured on it (one
    training-mode pass that averages, as a trained network's statistics match its data), then
    perturbed: each eval-mode BatchNorm then gives activations of the scale its affine values
    set, deep in the network too, so that a clipping activation clips (MobileNet's ReLU6 at 6).
    Without it they are random around 0 and 1."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            if m.affine:
                m.weight.uniform_(*weight)
                m.bias.uniform_(-bias, bias)
        if calibrate is not None:
            momenta = [m.momentum for m in norms]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: the statistics of this batch
            was_training = model.training
            model.train()
            model(calibrate)
            model.train(was_training)
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
                m.running_mean.add_(torch.randn_like(m.running_mean) * 0.1 * m.running_var.sqrt())
                m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.5, 1.5))
        else:
            for m in norms:
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def relative_difference(mine, ref) -> float:
    """max |mine - ref| / max |ref|: the error relative to the output's scale, over a tensor or over
    the fields of a training-mode namedtuple."""
    if isinstance(ref, tuple):
        assert isinstance(mine, tuple) and len(mine) == len(ref)
        return max(relative_difference(a, b) for a, b in zip(mine, ref))
    assert mine.shape == ref.shape
    return ((mine - ref).abs().max() / ref.abs().max()).item()


def compare_with_reference(ref, mine, x, seed: int = 0) -> dict:
    """The largest relative difference between two models holding the same weights, in eval, in
    training (one forward pass; dropout and stochastic depth draw the same masks on both sides:
    the same seed before each) and in the BatchNorm running statistics that pass updated."""
    import torch

    diff = {}
    with torch.no_grad():
        ref.eval()
        mine.eval()
        diff["eval"] = relative_difference(mine(x), ref(x))
        ref.train()
        mine.train()
        torch.manual_seed(seed)
        want = ref(x)
        torch.manual_seed(seed)
        diff["train"] = relative_difference(mine(x), want)
    mine_state, ref_state = mine.state_dict(), ref.state_dict()
    assert list(mine_state) == list(ref_state)
    diff["state"] = max((relative_difference(mine_state[k], v) for k, v in ref_state.items()
                         if k.endswith(("running_mean", "running_var"))), default=0.0)
    assert all(torch.equal(mine_state[k], v) for k, v in ref_state.items() if k.endswith("num_batches_tracked"))
    return diff


def load_into(cls, state: dict):
    """``cls()`` holding a copy of ``state``, loaded strictly. Built on the meta device: the
    default initialisation of a large network (VGG's 138M weights) costs more than the test."""
    import torch

    with torch.device("meta"):
        mine = cls()
    assert list(mine.state_dict()) == list(state)  # same keys, same order: no renaming needed
    mine.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    return mine


_TV_LIB = None


def import_torchvision():
    """torchvision 0.28 imported beside the CPU torch wheel (also used by tests/reference/measure.py).

    Its compiled ops are linked against CUDA torch and cannot load, after which the import fails
    with "operator torchvision::nms does not exist". Classification models never call those ops,
    so defining the two schemas first is enough.
    """
    global _TV_LIB
    import torch

    if "torchvision" not in sys.modules:
        try:
            _TV_LIB = torch.library.Library("torchvision", "DEF")
            _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # already defined (a real CPU build of torchvision, or a second session)
    import torchvision

    return torchvision


@pytest.fixture(scope="session")
def torchvision():
    pytest.importorskip("torch")
    if importlib.util.find_spec("torchvision") is None:  # importing it here would fail (see above)
        pytest.skip("torchvision is not installed")
    return import_torchvision()
