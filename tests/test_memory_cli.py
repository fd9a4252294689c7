"""Memory and time on the command line, without torch: `check --batch/--dtype/--train/--optimizer/
--device` (columns, JSON fields, errors) and `diff --batch ...` (memory deltas). tests/test_memory.py
holds the torch oracle for the figures."""
from __future__ import annotations

import json

import pytest

SMALL = "tests/specs/ok/small_cnn.yaml"


def test_default_output_unchanged_by_the_new_options(cli):
    """Without the options, `check` prints exactly what it printed before (no new column or line)."""
    plain = cli("check", SMALL, "--depth", "1")
    assert plain.returncode == 0
    header = next(line for line in plain.stdout.splitlines() if line.startswith("Layer (type)"))
    assert header.endswith("  MACs")  # no new column
    assert "Memory" not in plain.stdout and "estimate" not in plain.stdout
    assert "memory" not in json.loads(cli("check", SMALL, "--format", "json").stdout)


def test_batch_adds_output_bytes_and_the_inference_peak(cli):
    out = cli("check", SMALL, "--depth", "1", "--batch", "4").stdout
    header = next(line for line in out.splitlines() if line.startswith("Layer (type)"))
    assert header.split()[-1] == "Output" and "Saved" not in header
    row = next(line for line in out.splitlines() if line.startswith("conv1 "))
    assert row.endswith("32.77 kB")  # 4 x 8 x 16 x 16 float32
    assert "Memory at batch 4, float32" in out
    assert "  Inference peak:             73.51 kB  at pool1" in out
    assert "Training step" not in out


def test_train_adds_saved_bytes_and_the_training_step(cli):
    out = cli("check", SMALL, "--depth", "1", "--batch", "4", "--optimizer", "adam").stdout  # --optimizer: training
    header = next(line for line in out.splitlines() if line.startswith("Layer (type)"))
    assert header.split()[-2:] == ["Output", "Saved"]
    assert "  Training step (adam):" in out
    assert "    Optimizer state:          7.79 kB" in out  # 2 x 3,880 + 4 bytes x 8 tensors


def test_json_fields(cli):
    data = json.loads(cli("check", SMALL, "--batch", "4", "--dtype", "bfloat16", "--train", "--device",
                          "cpu-epyc-2core", "--format", "json").stdout)
    m = data["memory"]
    assert (m["batch"], m["dtype"], m["optimizer"]) == (4, "bfloat16", "sgd")
    assert m["params_bytes"] == m["grads_bytes"] == 970 * 2 and m["optimizer_bytes"] == 0
    assert m["input_bytes"] == 4 * 3 * 16 * 16 * 2
    assert set(m) >= {"saved_bytes", "inference_peak_bytes", "training_peak_bytes", "training_peak_at"}
    conv = data["layers"][0]
    assert conv["path"] == "conv1"
    assert conv["output_bytes"] == 4 * 8 * 16 * 16 * 2 and conv["saved_bytes"] == 4 * 3 * 16 * 16 * 2
    # the roofline of conv1: 2 x MACs x batch FLOPs; input, output and weights moved once
    assert conv["flops"] == 2 * 55296 * 4
    assert conv["bytes_moved"] == (4 * 3 * 16 * 16 + 4 * 8 * 16 * 16 + 224) * 2
    t = data["time"]
    assert t["estimate"] is True and t["device"] == "cpu-epyc-2core" and t["dtype"] == "bfloat16"
    assert conv["time_s"] == pytest.approx(max(conv["flops"] / t["peak_flops"], conv["bytes_moved"] / t["memory_bandwidth"]))
    assert t["total_s"] == pytest.approx(sum(layer["time_s"] for layer in data["layers"]))
    flat = next(layer for layer in data["layers"] if layer["op"] == "flatten")
    assert flat["bytes_moved"] == 0 and flat["time_s"] == 0  # a view moves nothing
    assert data["modules"][0]["time_s"] == conv["time_s"]


def test_device_estimate_in_the_table(cli):
    out = cli("check", "specs/resnet50.yaml", "--depth", "1", "--batch", "32", "--device", "a100-sxm4-80gb").stdout
    assert "an estimate, not a measurement" in out
    assert "FLOP/B" in out and "Est. time" in out
    assert "relu (relu)" in out and " M\n" in out  # the ReLU over 32 x 64 x 112 x 112 is memory-bound


@pytest.mark.parametrize("args, code, message", [
    (["--device", "no-such-gpu"], 2, "no device profile 'no-such-gpu'"),
    (["--batch", "0"], 2, "expected a positive integer"),
    (["--dtype", "float64"], 2, "invalid choice"),
    (["--optimizer", "lbfgs"], 2, "invalid choice"),
])
def test_usage_errors(cli, args, code, message):
    proc = cli("check", SMALL, *args)
    assert proc.returncode == code and message in proc.stderr and "Traceback" not in proc.stderr


def test_bad_profile_is_a_located_error(cli, tmp_path):
    bad = tmp_path / "gpu.yaml"
    bad.write_text("peak_flops: {float32: fast}\nmemory_bandwidth: 1.0e+9\n")
    proc = cli("check", SMALL, "--device", bad)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: error: peak_flops must map dtypes" in proc.stderr
    half = tmp_path / "fp32only.yaml"
    half.write_text("peak_flops: {float32: 1.0e+12}\nmemory_bandwidth: 1.0e+9\n")
    proc = cli("check", SMALL, "--device", half, "--dtype", "float16")
    assert proc.returncode == 2 and "has no peak for float16" in proc.stderr


def test_memory_and_time_need_no_torch():
    from test_imports import imported_by

    roots = imported_by("check", "specs/inception_v3.yaml", "--batch", "8", "--train", "--optimizer", "adamw",
                        "--device", "cpu-epyc-2core")
    assert not roots & {"torch", "torchvision", "numpy", "jinja2", "networkx"}


def test_diff_shows_memory_deltas_only_when_asked(cli):
    plain = cli("diff", "googlenet_paper", "googlenet")
    assert "peak bytes" not in plain.stdout and "saved change" not in plain.stdout
    out = cli("diff", "googlenet_paper", "googlenet", "--batch", "8", "--train").stdout
    assert "  peak bytes (eval, batch 8, float32)" in out
    assert "saved for backward (batch 8, float32)" in out and "peak bytes (training step, sgd)" in out
    assert "saved change" in out.split("Top-level modules that differ:")[1].splitlines()[1]


def test_diff_memory_deltas_are_the_static_figures(cli, compiled):
    from archspec.memory import measure

    data = json.loads(cli("diff", "specs/googlenet_paper.yaml", "specs/googlenet.yaml", "--batch", "4",
                          "--optimizer", "adam", "--format", "json").stdout)
    mem = data["totals"]["memory"]
    assert (mem["batch"], mem["dtype"], mem["optimizer"]) == (4, "float32", "adam")
    a, b = (measure(compiled(f"specs/{n}.yaml"), 4, optimizer="adam") for n in ("googlenet_paper", "googlenet"))
    assert mem["inference_peak_bytes"] == {"a": a.inference_peak, "b": b.inference_peak,
                                           "delta": b.inference_peak - a.inference_peak,
                                           "ratio": round(b.inference_peak / a.inference_peak, 4)}
    assert mem["training_peak_bytes"]["delta"] == b.training_peak - a.training_peak
    norm1 = next(m for m in data["modules"] if m["path"] == "norm1")  # LRN, gone in torchvision's layout
    assert norm1["saved_delta"] == -a.modules["norm1"]["saved_bytes"] and norm1["saved_bytes"]["b"] is None


def test_a_network_memory_cannot_count_is_a_located_error(tmp_path, monkeypatch, capsys):
    """An op without a memory rule (every op of the catalog has one today: a new op before its rule
    is written, here silu's taken away) refuses memory and time for its spec (status 1, at the op),
    and the plain check of the same spec still works."""
    import dataclasses

    from archspec import ops
    from archspec.cli import main

    monkeypatch.setitem(ops.OPS, "silu", dataclasses.replace(ops.OPS["silu"], memory=None))
    spec = tmp_path / "silu_net.yaml"
    spec.write_text("archspec: 1\nname: silu_net\ninput: [3, 8, 8]\nnum_classes: 4\n"
                    "layers:\n  - conv: conv2d(4, 3)\n  - silu\n  - flatten\n  - fc: linear(num_classes)\n")
    assert main(["check", str(spec), "--batch", "2"]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:7:5: error: /silu: silu has no memory rule yet" in err and "Traceback" not in err
    assert main(["check", str(spec)]) == 0
