"""archspec build: generated modules import, run, match the static analysis exactly, and are
written deterministically and safely."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SPECS, run_cli

torch = pytest.importorskip("torch")

from archspec.emit import is_hand_edited, render, split_header  # noqa: E402
from archspec.generate import generate  # noqa: E402
from archspec.pipeline import compile_spec, spec_files  # noqa: E402
from archspec.verify import import_generated, model_class, verify_module  # noqa: E402

ALL_SPECS = [os.path.relpath(p, ROOT) for p in spec_files(str(SPECS))]
GENERATED = ROOT / "generated"


@pytest.fixture(scope="session")
def built(tmp_path_factory, compiled):
    """Generate every shipped spec once into a temporary directory and import it."""
    out = tmp_path_factory.mktemp("built")
    result = {}

    def get(spec: str):
        if spec not in result:
            c = compiled(spec)
            path = out / f"{c.name}.py"
            path.write_text(generate(c))
            result[spec] = (c, import_generated(str(path)), path)
        return result[spec]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_generated_module_matches_analysis(built, spec):
    """The oracle: parameters, state_dict, every module's output shape and MACs equal the analysis."""
    c, module, _ = built(spec)
    verify_module(c, model_class(module, c))


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_generated_module_imports_only_torch_and_stdlib(built, spec):
    _, _, path = built(spec)
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots <= {"torch", "collections", "typing"}, roots


@pytest.mark.slow
@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if s.endswith(("googlenet.yaml", "inception_v3.yaml"))])
def test_training_outputs_and_aux_loss(built, spec):
    c, module, _ = built(spec)
    cls = model_class(module, c)
    torch.manual_seed(0)
    model = cls(num_classes=10)
    model.train()
    x = torch.randn(2, *c.expanded.input)
    out = model(x)
    heads = [h.name for h in c.expanded.aux]
    # torchvision's namedtuples (specs' outputs:): type, field names and order, aux2 before aux1
    field_of = {"googlenet": {"aux1": "aux_logits1", "aux2": "aux_logits2"}, "inception_v3": {"AuxLogits": "aux_logits"}}[c.name]
    assert type(out).__name__ == {"googlenet": "GoogLeNetOutputs", "inception_v3": "InceptionOutputs"}[c.name]
    assert out._fields == {"googlenet": ("logits", "aux_logits2", "aux_logits1"), "inception_v3": ("logits", "aux_logits")}[c.name]
    assert all(tuple(t.shape) == (2, 10) for t in out)
    target = torch.tensor([1, 7])
    loss = module.loss(out, target)
    expected = torch.nn.functional.cross_entropy(out.logits, target) + sum(
        h.loss_weight * torch.nn.functional.cross_entropy(getattr(out, field_of[h.name]), target) for h in c.expanded.aux)
    assert torch.allclose(loss, expected)
    loss.backward()
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0
    for name in heads:
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
    # eval: a plain tensor and only the main term
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert isinstance(logits, torch.Tensor) and tuple(logits.shape) == (2, 10)
    assert torch.allclose(module.loss(logits, target), torch.nn.functional.cross_entropy(logits, target))


@pytest.mark.slow
def test_aux_logits_false_removes_aux_modules(built):
    c, module, _ = built("specs/googlenet.yaml")
    model = module.GoogLeNet(aux_logits=False)
    names = [n for n, _ in model.named_children()]
    assert "aux1" not in names and "aux2" not in names
    assert sum(p.numel() for p in model.parameters()) == c.analysis.totals.params_eval == 6624904
    model.train()
    out = model(torch.randn(2, 3, 224, 224))
    assert isinstance(out, torch.Tensor)


def test_dropout_rates_are_constructor_arguments(built):
    _, module, _ = built("specs/googlenet.yaml")
    model = module.GoogLeNet(dropout=0.4, dropout_aux=0.5)
    assert model.dropout.p == 0.4
    assert model.aux1.dropout.p == 0.5 and model.aux2.dropout.p == 0.5


@pytest.mark.slow
def test_eval_model_passes_torch_export(built):
    _, module, _ = built("specs/googlenet.yaml")
    torch.manual_seed(0)
    model = module.GoogLeNet(aux_logits=False).eval()
    x = torch.randn(1, 3, 224, 224)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), model(x), atol=1e-6)


# --- committed files and determinism ---------------------------------------------------------------

def test_golden_googlenet_module():
    """generated/googlenet.py is pinned: regenerate with ARCHSPEC_ACCEPT=1 after a deliberate change."""
    text = generate(compile_spec(str(SPECS / "googlenet.yaml")))
    golden = GENERATED / "googlenet.py"
    if os.environ.get("ARCHSPEC_ACCEPT") == "1":
        golden.write_text(text)
    assert golden.read_text() == text
    assert "class GoogLeNet(nn.Module):" in text and "def loss(" in text


def test_committed_generated_files_are_current():
    proc = run_cli("build", "--check")
    assert proc.returncode == 0, proc.stderr
    stems = {Path(p).stem for p in spec_files(str(SPECS))}
    assert {p.stem for p in GENERATED.glob("*.py")} == stems


def test_templates_render_with_strict_undefined():
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        render("module.py.j2", {"title": ["x"]})


def test_builds_are_byte_identical_across_hash_seeds_and_directories(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    p1 = run_cli("build", str(SPECS / "googlenet.yaml"), "-o", "out", cwd=one, env={"PYTHONHASHSEED": "1"})
    p2 = run_cli("build", "googlenet", "-o", "out", cwd=two, env={"PYTHONHASHSEED": "12345"})  # the stock spec
    assert p1.returncode == 0 and p2.returncode == 0, (p1.stderr, p2.stderr)
    assert (one / "out" / "googlenet.py").read_bytes() == (two / "out" / "googlenet.py").read_bytes()
    text = (one / "out" / "googlenet.py").read_text()
    assert str(ROOT) not in text and str(tmp_path) not in text
    assert text.startswith("# Generated by archspec 0.1.0 from specs/googlenet.yaml. "
                           "Do not edit: run `archspec build -o out specs/googlenet.yaml`.\n")


def _hint(text: str) -> list:
    """The rebuild command in a generated file's header, as arguments."""
    import shlex

    command = text.split("\n", 1)[0].split("run `", 1)[1].rstrip("`.")
    words = shlex.split(command)
    assert words[:2] == ["archspec", "build"]
    return words[2:]


def test_overrides_are_the_defaults_of_what_was_built(tmp_path):
    """build --num-classes/--input: the class's default is what was built and the header's command
    carries the flags, so running it with --check finds the file current."""
    spec = str(SPECS / "alexnet.yaml")
    proc = run_cli("build", spec, "--num-classes", "10", "--input", "3x127x127", "-o", "gen", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "gen" / "alexnet.py").read_text()
    assert _hint(text) == ["--input", "3x127x127", "--num-classes", "10", "-o", "gen", "specs/alexnet.yaml"]
    assert "def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:" in text
    assert "Input 3x127x127, 10 classes by default." in text
    model = import_generated(str(tmp_path / "gen" / "alexnet.py")).AlexNet().eval()  # Cls() is the built model
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, 127, 127)).shape) == (1, 10)
    assert model.classifier[6].out_features == 10
    # the hint, run with --check where the file was built, finds it current; without the flags, stale
    hint = [spec if w == "specs/alexnet.yaml" else w for w in _hint(text)]
    ok = run_cli("build", "--check", *hint, cwd=tmp_path)
    assert ok.returncode == 0 and "1 generated file(s) up to date" in ok.stdout, ok.stderr
    stale = run_cli("build", "--check", "-o", "gen", spec, cwd=tmp_path)
    assert stale.returncode == 1 and "gen/alexnet.py: stale" in stale.stderr


def test_deploy_header_carries_its_flags(tmp_path):
    spec = str(SPECS / "googlenet.yaml")
    assert run_cli("build", "--deploy", "--num-classes", "7", spec, "-o", "gen", cwd=tmp_path).returncode == 0
    text = (tmp_path / "gen" / "googlenet_deploy.py").read_text()
    assert _hint(text) == ["--deploy", "--num-classes", "7", "-o", "gen", "specs/googlenet.yaml"]
    assert "def __init__(self, num_classes: int = 7, channels_last: bool = True)" in text
    assert run_cli("build", "--check", "--deploy", "--num-classes", "7", "-o", "gen", spec, cwd=tmp_path).returncode == 0


def test_output_labels_are_never_absolute(tmp_path, monkeypatch):
    from archspec.emit import output_label

    monkeypatch.chdir(tmp_path)
    assert output_label("generated") == output_label("./generated/") == "generated"
    assert output_label("../out") == "../out"
    assert output_label(str(tmp_path / "a" / "b")) == "a/b"  # below the current directory
    assert output_label("/elsewhere/out") == "out"


def test_check_reports_stale_and_hand_edited_files(tmp_path):
    out = tmp_path / "gen"
    assert run_cli("build", "specs/googlenet.yaml", "specs/alexnet.yaml", "-o", out).returncode == 0
    ok = run_cli("build", "specs/googlenet.yaml", "specs/alexnet.yaml", "-o", out, "--check")
    assert ok.returncode == 0 and "2 generated file(s) up to date" in ok.stdout
    # hand-edited: the body no longer matches the header's hash
    g = out / "googlenet.py"
    g.write_text(g.read_text().replace("x = self.fc(x)", "x = self.fc(x) * 2"))
    assert is_hand_edited(g.read_text())
    # stale: a consistent file generated from another spec version
    a = out / "alexnet.py"
    other = generate(compile_spec(str(SPECS / "alexnet.yaml"), num_classes=10))
    a.write_text(other)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = run_cli("build", "specs/googlenet.yaml", "specs/alexnet.yaml", "-o", out, "--check")
    assert proc.returncode == 1
    assert f"{out}/alexnet.py: stale" in proc.stderr
    assert f"{out}/googlenet.py: edited by hand" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # --check writes nothing


def test_hand_edited_file_needs_force(tmp_path):
    out = tmp_path / "gen"
    assert run_cli("build", "specs/googlenet.yaml", "-o", out).returncode == 0
    g = out / "googlenet.py"
    edited = g.read_text() + "\n# my note\n"
    g.write_text(edited)
    proc = run_cli("build", "specs/googlenet.yaml", "-o", out)
    assert proc.returncode == 1
    assert "was edited by hand; not overwritten (use --force to replace it)" in proc.stderr
    assert g.read_text() == edited
    assert run_cli("build", "specs/googlenet.yaml", "-o", out, "--force").returncode == 0
    assert not is_hand_edited(g.read_text())


def test_failed_build_leaves_existing_files_untouched(tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    old = "# an older generated file\n"
    (out / "googlenet.py").write_text(old)
    broken = tmp_path / "broken.yaml"
    broken.write_text("archspec: 1\nname: broken\ninput: [3, 8, 8]\nlayers:\n  - fc: nosuchop(3)\n")
    proc = run_cli("build", "specs/googlenet.yaml", broken, "-o", out, "--force")
    assert proc.returncode == 1
    assert "unknown op or block 'nosuchop'" in proc.stderr
    assert "nothing was written" in proc.stderr
    assert (out / "googlenet.py").read_text() == old
    assert sorted(p.name for p in out.iterdir()) == ["googlenet.py"]


def test_header_names_spec_and_body_hash():
    text = (GENERATED / "googlenet.py").read_text()
    digest, body = split_header(text)
    import hashlib

    assert digest == hashlib.sha256(body.encode()).hexdigest()


@pytest.mark.slow
def test_verify_cli_reports_success(tmp_path):
    proc = run_cli("build", "specs/alexnet.yaml", "-o", tmp_path, "--verify")
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stdout


def test_verify_reports_differences(tmp_path, built):
    """A generated module that disagrees with the analysis is caught, with the difference listed."""
    c, _, path = built("specs/alexnet.yaml")
    bad = tmp_path / "alexnet.py"
    bad.write_text(path.read_text().replace("nn.MaxPool2d(3, stride=2)", "nn.MaxPool2d(3, stride=3)", 1))
    from archspec.errors import ArchspecError, flatten
    from archspec.verify import verify_file

    with pytest.raises(ArchspecError) as info:
        verify_file(c, str(bad))
    messages = [e.message for e in flatten(info.value)]
    assert "module features.2: generated output [64, 18, 18], analysis [64, 27, 27]" in messages
    assert any(m.startswith("MACs: generated ") for m in messages)


def test_written_files_follow_the_umask_and_keep_their_mode(tmp_path):
    from archspec.files import write_atomic

    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.py"
        write_atomic(str(fresh), "x = 1\n")
        assert fresh.stat().st_mode & 0o777 == 0o644
        kept = tmp_path / "kept.py"
        kept.write_text("old\n")
        kept.chmod(0o640)
        write_atomic(str(kept), "new\n")
        assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "new\n"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".archspec-")] == []
    finally:
        os.umask(old)


def test_a_build_that_makes_its_output_directory_says_so(tmp_path):
    """`archspec build googlenet` outside a project writes ./generated/googlenet.py, as in a
    project, and says that it made the directory (it did so silently)."""
    proc = run_cli("build", "googlenet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["archspec: created generated/ (the output directory; -o DIR writes elsewhere)",
                                        "generated/googlenet.py: written (13,004,888 params)"]
    assert sorted(p.name for p in (tmp_path / "generated").iterdir()) == ["googlenet.py"]
    again = run_cli("build", "googlenet", cwd=tmp_path)
    assert again.stdout.splitlines() == ["generated/googlenet.py: unchanged (13,004,888 params)"]
    js = run_cli("build", "alexnet", "-o", "out", "--format", "json", cwd=tmp_path)
    assert json.loads(js.stdout) == {"files": [{"file": "out/alexnet.py", "status": "written"}], "ok": True,
                                     "created": "out"}
    failed = run_cli("build", "alexnet", "--num-classes", "0", "-o", "never", cwd=tmp_path)
    assert failed.returncode == 2 and not (tmp_path / "never").exists()
