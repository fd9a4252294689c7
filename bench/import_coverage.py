"""`archspec import` over every classification model of torchvision (docs/import.md, coverage).

    python bench/import_coverage.py                    # every model; about ten minutes on 2 cores
    python bench/import_coverage.py resnet18 vit_b_16  # some
    python bench/import_coverage.py --markdown docs/import_coverage.md --json coverage.json

For each name of ``torchvision.models.list_models(module=torchvision.models)``, built with its
builder's defaults (no weights) at its own input size (299 for inception_v3, 224 for the rest):

* **exact**: imported, and the spec's analysis equals what torch measures of the model (parameters
  in training and eval, buffers, MACs, output shape: the ``expect:`` the import writes and checks);
  the spec's generated module loads the model's state_dict strictly (the same keys in the same
  order); its outputs in eval equal the model's to the last bit on a 2 x 3 x H x W input (BatchNorm
  statistics and affine parameters randomised, the input 4 x N(0, 1));
* **differs**: imported, but the generated module's outputs differ (an archspec bug);
* **refused**: the import names what it cannot write; the first reason is shown, and every op
  outside the catalog is listed under "ops the catalog lacks".

The number exact is the figure to raise. Models are built on the meta device for the import where
their builder allows (no weights to draw), then on the CPU for the comparison.
"""
from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SIZES = {"inception_v3": 299}


def _build(tv, name, device):
    import torch

    from archspec.importer.target import build

    with torch.device(device):
        return build(tv.models.get_model_builder(name), {}, name)


def _compare(tv, name, result, size) -> str:
    """'exact' or 'differs': the model (real weights) against the imported spec's module."""
    import torch

    from archspec.generate import generate
    from archspec.verify import import_generated, model_class
    from conftest import load_into, randomise_batchnorm

    torch.manual_seed(0)
    model, _ = _build(tv, name, "cpu")
    randomise_batchnorm(model, 4 * torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}_imported.py"
        path.write_text(generate(result.compiled))
        cls = model_class(import_generated(str(path)), result.compiled)
    mine = load_into(cls, model.state_dict())
    model.eval()
    mine.eval()
    x = 4 * torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = model(x)
        same = bool(torch.isfinite(y).all()) and torch.equal(y, mine(x))  # NaN equals nothing
    return "exact" if same else "differs"


def one(tv, name: str) -> dict:
    from archspec.errors import ArchspecError, flatten
    from archspec.importer import import_model

    size = SIZES.get(name, 224)
    start = time.process_time()
    row = {"model": name}
    try:
        try:
            model, records = _build(tv, name, "meta")
        except Exception:  # a builder that needs real tensors (RegNet's)
            model, records = _build(tv, name, "cpu")
        result = import_model(model, name, (3, size, size), records, source=f"archspec import torchvision.models:{name}")
        del model
        t = result.compiled.analysis.totals
        row.update(params=t.params, macs=t.macs, lines=result.text.count("\n"),
                   blocks=len(result.compiled.resolved.blocks) - _stock_blocks(result.compiled))
        row["status"] = _compare(tv, name, result, size)
    except ArchspecError as exc:
        errors = flatten(exc)
        row.update(status="refused", reason=errors[0].message, problems=len(errors),
                   missing=sorted({m for e in errors for m in re.findall(r"(\S+) is not in the op catalog", e.message)}))
    row["seconds"] = round(time.process_time() - start, 1)
    gc.collect()
    return row


def _stock_blocks(compiled) -> int:
    """Blocks the spec reuses from stock libraries (in resolved.blocks, not defined by the spec)."""
    own = compiled.resolved.spec.blocks
    return sum(1 for b in compiled.resolved.blocks if b not in own)


def markdown(rows: list) -> str:
    exact = [r for r in rows if r["status"] == "exact"]
    lines = [f"{len(exact)} of {len(rows)} models imported exactly "
             f"({sum(1 for r in rows if r['status'] == 'refused')} refused, "
             f"{sum(1 for r in rows if r['status'] == 'differs')} differ).", "",
             "| model | result | params | MACs | spec lines | blocks | reason |", "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        if r["status"] == "refused":
            reason = r["reason"].replace("|", "\\|")
            more = f" (and {r['problems'] - 1} more problem{'s' if r['problems'] > 2 else ''})" if r["problems"] > 1 else ""
            lines.append(f"| {r['model']} | refused | | | | | {reason}{more} |")
        else:
            lines.append(f"| {r['model']} | {r['status']} | {r['params']:,} | {r['macs']:,} | {r['lines']} | "
                         f"{r['blocks']} | |")
    missing: dict = {}
    for r in rows:
        for op in r.get("missing", ()):
            missing.setdefault(op, []).append(r["model"])
    if missing:
        lines += ["", "Ops the catalog lacks, and the models that call them:", "",
                  "| op | models |", "| --- | --- |"]
        for op, models in sorted(missing.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"| `{op}` | {', '.join(models)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help="torchvision model names (default: every classification model)")
    p.add_argument("--markdown", metavar="FILE", help="write the table here (default: standard output)")
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from conftest import import_torchvision

    tv = import_torchvision()
    names = args.models or tv.models.list_models(module=tv.models)
    rows = []
    for name in names:
        rows.append(one(tv, name))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = markdown(rows)
    if args.markdown:
        Path(args.markdown).write_text(text)
    else:
        print(text, end="")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
