"""`build --verify` against the reference interpreter: wrong numbers that the static oracle cannot
see are caught; the deploy build is verified; --verify without torch is a usage error."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli

torch = pytest.importorskip("torch")

from archspec.deploy import generate_deploy  # noqa: E402
from archspec.errors import ArchspecError, flatten  # noqa: E402
from archspec.generate import generate  # noqa: E402
from archspec.pipeline import compile_spec  # noqa: E402
from archspec.verify import TOLERANCE, verify, verify_deploy, verify_file, verify_module  # noqa: E402

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
OK_SPECS = ["aux_heads", "branches", "conditional", "features", "residual", "shapes", "small_cnn", "small_cnn_wide",
            "split_again"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one thread is several times faster than two on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _classes(c) -> tuple:
    training, deploy = {}, {}
    exec(compile(generate(c), "training.py", "exec"), training)
    exec(compile(generate_deploy(c), "deploy.py", "exec"), deploy)
    return training[training["__all__"][0]], deploy[deploy["__all__"][0]]


@pytest.mark.parametrize("name", OK_SPECS)
def test_the_documented_specs_match_the_interpreter(name):
    c = compile_spec(str(ROOT / f"tests/specs/ok/{name}.yaml"))
    training, deploy = _classes(c)
    verify(c, training)
    verify_deploy(c, deploy)


def test_googlenet_matches_the_interpreter_with_aux_heads_and_dropout_in_training():
    c = compile_spec(str(ROOT / "specs/googlenet.yaml"), (3, 64, 64))
    training, deploy = _classes(c)
    verify(c, training)
    verify_deploy(c, deploy)


def _messages(c, path) -> list:
    with pytest.raises(ArchspecError) as info:
        verify_file(c, str(path))
    return [e.message for e in flatten(info.value)]


def test_wrong_numbers_with_the_right_shapes_are_caught(tmp_path):
    """Concat branches swapped: parameters, shapes and MACs agree, the numbers do not."""
    c = compile_spec(str(ROOT / "tests/specs/ok/branches.yaml"))
    text = generate(c)
    assert text.count("torch.cat([branch1, branch2, branch3], 1)") == 1
    bad = tmp_path / "branches.py"
    bad.write_text(text.replace("torch.cat([branch1, branch2, branch3], 1)", "torch.cat([branch2, branch1, branch3], 1)"))
    ns: dict = {}
    exec(compile(bad.read_text(), "bad.py", "exec"), ns)
    verify_module(c, ns["Branches"])  # the static oracle sees nothing
    messages = _messages(c, bad)
    assert [m.split(" by ")[0] for m in messages] == [
        "output in eval: generated differs from the interpreter", "output in training: generated differs from the interpreter"]
    assert messages[0].endswith(f"tolerance {TOLERANCE:g} of it)")


def test_a_module_that_writes_into_its_input_is_caught(tmp_path):
    c = compile_spec(str(ROOT / "tests/specs/ok/small_cnn.yaml"))
    bad = tmp_path / "small_cnn.py"
    bad.write_text(generate(c).replace("x = self.conv1(x)", "x = self.conv1(x.relu_())", 1))
    messages = _messages(c, bad)
    assert "forward in eval changes its input tensor in place (the caller's data)" in messages
    assert "forward in training changes its input tensor in place (the caller's data)" in messages


def test_a_generated_module_that_raises_is_a_verify_error_not_an_internal_error(tmp_path):
    c = compile_spec(str(ROOT / "tests/specs/ok/small_cnn.yaml"))
    bad = tmp_path / "small_cnn.py"
    bad.write_text(generate(c).replace("x = self.fc(x)", "x = self.fc(x)[None]", 1))
    assert _messages(c, bad)[0].startswith("output: generated [1, 2, 10], analysis [2, 10]")
    bad.write_text(generate(c).replace("import torch\n", "import torch\nraise ImportError('no')\n", 1))
    assert _messages(c, bad) == ["the generated module fails in import: ImportError: no"]


@pytest.mark.parametrize("layers, dtype_line", [
    ("[maxpool2d(2), flatten]", None),
    ("[{bn: 'batchnorm2d(affine=false)'}, flatten]", "next(b for b in model.buffers() if b.is_floating_point())"),
    ("[{norm: 'groupnorm(1, affine=false)'}, flatten]", None),  # a deploy layer without any tensor
])
def test_deploy_from_trained_on_a_network_without_parameters(tmp_path, layers, dtype_line):
    """The fuzzer's StopIteration: from_trained read next(model.parameters()) of a network that has none."""
    spec = tmp_path / "bare.yaml"
    spec.write_text(f"archspec: 1\nname: bare\ninput: [2, 4, 4]\nlayers: {layers}\n")
    c = compile_spec(str(spec))
    text = generate_deploy(c)
    assert "next(model.parameters())" not in text
    assert (dtype_line in text) if dtype_line else ("deploy.to(dtype" not in text)
    namespace: dict = {}
    exec(compile(text, "bare_deploy.py", "exec"), namespace)
    verify_deploy(c, namespace["BareDeploy"])


def test_build_deploy_verify_checks_the_deploy_module_and_prints_json(tmp_path):
    """issue 12, 5: this command ended in an internal error and printed no JSON."""
    proc = run_cli("build", "--deploy", "--verify", "googlenet", "-o", tmp_path / "gen", "--format", "json",
                   "--input", "3x64x64", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    path = str(tmp_path / "gen" / "googlenet_deploy.py")
    assert json.loads(proc.stdout) == {"files": [{"file": path, "status": "written"},
                                                 {"file": path, "status": "verified"}], "ok": True,
                                       "created": str(tmp_path / "gen")}  # the build made the directory


def test_build_verify_says_what_it_checked(tmp_path):
    proc = run_cli("build", "--verify", "tests/specs/ok/aux_heads.yaml", "-o", tmp_path, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1] == (
        f"{tmp_path}/aux_heads.py: verified (params, every module's output shape and MACs match the analysis; "
        "outputs, aux outputs, BatchNorm statistics and gradients match the interpreter in eval and training)")


def test_verify_without_torch_is_a_usage_error_and_writes_nothing(tmp_path):
    """issue 12, 6: it was an internal error (exit 3)."""
    out = tmp_path / "out"
    code = ("import sys; sys.modules['torch'] = None\n"
            "from archspec.cli import main\n"
            f"sys.exit(main(['build', '--verify', 'tests/specs/ok/small_cnn.yaml', '-o', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == ("archspec: error: --verify imports and runs the generated module, which needs torch; "
                           "it is not installed (pip install 'archspec[torch]')\n")
    assert not out.exists()
