"""The committed reports describe the bundled models as they are now: every report that names
a file under models/ carries that file's sha256, and the README quotes the default model's
accuracy from its manifest."""

import hashlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _sha(path: str) -> str:
    return hashlib.sha256((REPO / path).read_bytes()).hexdigest()


def _reports():
    """(report file, model path, sha256 it records) of every committed report."""
    for f in sorted((REPO / "docs" / "energy").glob("*/energy.json")):
        r = json.loads(f.read_text())
        yield f, r["model"], r.get("model_sha256")
    for f in sorted((REPO / "docs" / "sim").glob("*/sim.json")):
        m = json.loads(f.read_text())["meta"]
        yield f, m["model"], m.get("model_sha256")
    for f in sorted((REPO / "docs" / "claim").glob("claim.json")):
        for row in json.loads(f.read_text()):
            yield f, row["model"], row.get("model_sha256")
    for f in sorted((REPO / "bitstreams").glob("*/manifest.json")):
        m = json.loads(f.read_text())["model"]
        yield f, m["path"], m.get("sha256")


# Reports of generated models (the tiny random one of the host link) have nothing to compare to.
REPORTS = [r for r in _reports() if r[1].startswith("models/")]


def test_there_are_reports_to_check():
    kinds = {f.parent.parent.name for f, _, _ in REPORTS} | {f.parent.name for f, _, _ in REPORTS}
    assert {"energy", "sim", "claim", "bitstreams"} <= kinds


@pytest.mark.parametrize("report,model,sha", REPORTS,
                         ids=[str(f.relative_to(REPO)) for f, _, _ in REPORTS])
def test_report_is_of_the_bundled_file(report, model, sha):
    assert sha is not None, f"{report} does not record the sha256 of {model}: regenerate it"
    assert sha == _sha(model), (f"{report} was made from another {model} (sha256 {sha[:12]}, "
                                f"now {_sha(model)[:12]}): regenerate it")


@pytest.mark.parametrize("doc", ["README.md", "models/README.md"])
def test_docs_quote_the_default_models_accuracy(doc):
    m = json.loads((REPO / "models" / "default.json").read_text())
    acc = f"{100 * m['cifar10_test']['accuracy_int']:.2f} %"
    assert m["cifar10_test"]["images"] == 10000
    assert acc in (REPO / doc).read_text(), f"{doc} does not quote the default's {acc}"


def test_memory_budget_doc_is_what_model_budget_prints():
    from model.budget import buffers, check, table
    from model.modelfile import CompiledModel

    cm = CompiledModel.load(REPO / "models" / "default.sfm")
    _, total, allowed = check(cm, "arty_a7_35")
    text = (REPO / "docs" / "memory_budget.md").read_text()
    doc = text.split("<!-- budget:default -->\n")[1].split("\n<!-- /budget:default -->")[0]
    assert doc == (table(buffers(cm), "arty_a7_35")
                   + f"\nfits arty_a7_35: {total:g} of {allowed} allowed BRAM36")


def _quoted_figures():
    """(figure as the README must print it, where it comes from) for the default model."""
    sim = json.loads((REPO / "docs" / "sim" / "default" / "sim.json").read_text())["meta"]
    yield f"{round(sim['cycles_mean']):,}", "docs/sim/default: cycles per image"
    yield f"SOPs / (P x cycles) {sim['utilization']:.3f}", "docs/sim/default: utilization"
    yield f"{sim['mismatched_images']} mismatches", "docs/sim/default: mismatched images"
    arty = json.loads((REPO / "bitstreams" / "arty_a7_35" / "manifest.json").read_text())
    u = arty["utilization"]
    yield (f"LUT {u['LUT']['percent']:.1f} %, BRAM36 {u['BRAM36']['used']:g} of "
           f"{u['BRAM36']['capacity']}", "bitstreams/arty_a7_35: utilization")
    ulx = json.loads((REPO / "bitstreams" / "ulx3s_85f" / "manifest.json").read_text())
    u = ulx["utilization"]
    yield (f"LUT4 {u['LUT']['percent']:.1f} %, DP16KD {u['EBR']['used']} of "
           f"{u['EBR']['capacity']}, Fmax {ulx['fmax']['$glbnet$clk']['fmax_mhz']:.2f} MHz",
           "bitstreams/ulx3s_85f: utilization and Fmax")


@pytest.mark.parametrize("figure,source", list(_quoted_figures()),
                         ids=[s for _, s in _quoted_figures()])
def test_readme_quotes_the_reports_of_the_default(figure, source):
    assert figure in (REPO / "README.md").read_text(), (
        f"README.md does not quote {figure!r} ({source}): copy the figure from the report")
