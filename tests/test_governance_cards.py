"""Model cards (Hugging Face's format, parsed by huggingface_hub), data quality over time (`lmwright data history`)
and licence compatibility (the table, `lmwright export` refusing a conflict, the promotion gate failing on one)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from huggingface_hub import ModelCard
from typer.testing import CliRunner

import lmwright
from lmwright.cli import app
from lmwright.core import licenses
from lmwright.core.models import resolve_model
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from tests.conftest import TINY, quiet

SECTIONS = ("## Model description", "## Intended use", "### Out-of-scope use", "## Training data",
            "## Training procedure", "## Evaluation", "## Risks and limitations", "## License", "## How to use")


# -- model cards ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ref, metric, pipeline", [("tiny", "bits_per_byte", "text-generation"),
                                                   ("tiny-assistant", "rouge_l", "text-generation"),
                                                   ("tiny-classifier", "f1_macro", "text-classification")])
def test_every_registered_model_has_a_card_huggingface_hub_parses(tiny_run, ref, metric, pipeline):
    root, _ = tiny_run
    model_dir, name, _ = resolve_model(Workspace.open(root), ref)  # the registered directory, in the artifacts
    card = ModelCard.load(model_dir / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["library_name"] == "transformers"
    assert data["pipeline_tag"] == pipeline and data["language"] == ["en"] and "lmwright" in data["tags"]
    assert data["model-index"][0]["name"] == name
    results = {r.metric_type: r for r in card.data.eval_results}
    assert metric in results and isinstance(results[metric].metric_value, float)
    # the Hub reads base_model as a repository id: a project's own base is named in the text
    assert "base_model" not in data and (("fine-tuned (" in card.text) == (ref != "tiny"))
    for section in SECTIONS:
        assert section in card.text, section
    # memorisation is measured on the base; the assistant's card shows it as its base's, the classifier's (no text
    # out of it) does not
    assert ("| risk.canary_max_exposure |" in card.text) == (ref != "tiny-classifier")
    assert ("its base model, tiny" in card.text) == (ref == "tiny-assistant")
    if ref == "tiny-classifier":
        assert "| risk.pii_rate |" not in card.text and "risk.facts." not in card.text
    assert "../dataset_card/README.md" in card.text and "| pydocs | PSF-2.0 |" in card.text
    published = {"tiny": "model", "tiny-assistant": "assistant", "tiny-classifier": "classifier"}[ref]
    assert (root / "lmwright-out" / published / "README.md").read_text() == str(card)


def test_base_card_shows_intervals_data_and_training(tiny_run):
    root, outcomes = tiny_run
    text = (root / "lmwright-out" / "model" / "README.md").read_text()
    val = outcomes["evaluate"].summary["val"]
    assert f"| bits per byte | validation documents | {val['bits_per_byte']:.4g} | [" in text  # with its interval
    dedup = outcomes["dedup"].summary
    assert f"Duplicates removed: {sum(dedup['removed'].values()):,}" in text
    assert "basic.too_short" in text and "| optimizer | muon |" in text and "24 optimizer steps" in text
    assert "No conflicts." in text


def test_new_risk_figures_appear_and_the_card_is_deterministic(tiny_run, tiny_copy):
    from lmwright.evaluate.model_card import render

    root, outcomes = tiny_run
    facts = outcomes["save"].summary["card"]
    assert str(render(facts)) == (root / "lmwright-out" / "model" / "README.md").read_text()
    more = {**facts, "risk": {**facts["risk"], "injection_rate": 0.25}}  # a check another module adds
    assert "| risk.injection_rate | 0.25 |" in str(render(more))
    again = lmwright.run(tiny_copy, until="save", force=("save",), reporter=quiet())["save"]
    assert again.status == "done" and again.digest == outcomes["save"].digest  # rerun: same card, same model


def test_a_model_tuned_from_a_registered_base_keeps_its_data_lineage(tiny_copy):
    # as a retraining does: finetune.base names the champion, whose card holds the data it was trained on
    out = lmwright.run(tiny_copy, ["finetune.base=tiny@1", "finetune.sft.steps=2"], until="sft", reporter=quiet())
    card = ModelCard.load(out["sft"].path / "model" / "README.md")
    assert card.data.base_model is None and "The base model tiny@1 was pretrained on the data below." in card.text
    assert "| pydocs | pydocs | PSF-2.0 | technical |" in card.text


def test_hf_export_carries_the_card_with_test_figures(tiny_copy):
    r = CliRunner().invoke(app, ["export", "--format", "hf", "-C", str(tiny_copy), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["licence"]["conflicts"] == [] and res["licence"]["sources"] == {"pydocs": "PSF-2.0"}
    card = ModelCard.load(tiny_copy / "lmwright-out" / "export" / "hf" / "README.md")
    test = [e for e in card.data.eval_results if e.dataset_split == "test"]
    recorded = next(t for t in Store(Workspace.open(tiny_copy).store_url).test_evaluations()
                    if t.model_digest.startswith(res["digest"])).metrics
    assert {e.metric_type for e in test} >= {"bits_per_byte", "perplexity"}
    assert next(e.metric_value for e in test if e.metric_type == "bits_per_byte") == \
        pytest.approx(recorded["bits_per_byte"], abs=1e-6)
    assert "| bits per byte | test documents |" in card.text and "tiny@1 is a pretrained" in card.text


# -- data quality over time ----------------------------------------------------------------------------------------

def test_data_history_shows_each_version_and_its_change(tiny_copy):
    # a second dataset version: near-duplicate removal off keeps the near duplicates the first one removed
    # (and the split's leak check off, which would remove those of them that cross splits)
    lmwright.run(tiny_copy, ["data.dedup.near.enabled=false", "split.leak_check=false"], until="card",
                 reporter=quiet())
    r = CliRunner().invoke(app, ["data", "history", "-C", str(tiny_copy), "--json"])
    assert r.exit_code == 0, r.output
    first, second = json.loads(r.stdout)
    assert first["change"] is None and first["duplicates"] > 0 and second["duplicates"] == 0
    for v in (first, second):
        assert v["documents_read"] == 114 and v["languages"] and v["pii_total"] == 0
        assert v["documents_kept"] == sum(v["splits"].values()) and v["removed"]["basic.too_short"] > 0
        assert v["duplicate_rate"] is not None and v["date"]
    ch = second["change"]
    assert ch["documents_kept"] == first["duplicates"] and ch["duplicate_rate"] == -first["duplicate_rate"]
    assert ch["removed"] == {"near_duplicate": -first["removed"]["near_duplicate"]}
    table = CliRunner().invoke(app, ["data", "history", "-C", str(tiny_copy)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and first["version"] in table.stdout and second["version"] in table.stdout
    assert f"near_duplicate -{first['removed']['near_duplicate']}" in table.stdout


def test_data_history_without_runs_says_how_to_start(tmp_path):
    (tmp_path / "lmwright.yaml").write_text(yaml.safe_dump(TINY))
    r = CliRunner().invoke(app, ["data", "history", "-C", str(tmp_path), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []


# -- licences ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source, model, ok", [
    ("PSF-2.0", "apache-2.0", True), ("MIT", "cc-by-nc-4.0", True), ("bsd-3-clause", "gpl-3.0", True),
    ("CC0-1.0", "mit", True), ("Public Domain", "apache-2.0", True), ("CC-BY-4.0", "mit", True),
    ("CC-BY-SA-4.0", "apache-2.0", False), ("cc-by-sa-4.0", "CC-BY-SA-4.0", True),
    ("CC-BY-NC-4.0", "apache-2.0", False), ("CC-BY-NC-4.0", "cc-by-nc-4.0", True),
    ("CC-BY-NC-SA-4.0", "cc-by-nc-4.0", False), ("CC-BY-NC-SA-4.0", "cc-by-nc-sa-4.0", True),
    ("GPL-3.0-only", "apache-2.0", False), ("GPL-3.0-only", "gpl-3.0", True), ("GPL-2.0+", "gpl-3.0", True),
    ("GPL-2.0", "gpl-3.0", False), ("LGPL-3.0", "mit", False), ("LGPL-3.0", "gpl-3.0", True),
    ("AGPL-3.0", "gpl-3.0", False), ("AGPL-3.0", "agpl-3.0", True),
    ("proprietary", "apache-2.0", False), ("proprietary", "proprietary", True), ("other", "mit", False),
    ("CC-BY-NC-3.0", "apache-2.0", False), ("CC-BY-SA-3.0", "mit", False), ("CC-BY-2.0", "mit", True),
    ("LGPL-2.1-only", "lgpl-3.0", False), ("LGPL-2.1-or-later", "lgpl-3.0", True), ("MPL-2.0", "gpl-3.0+", True),
    ("GFDL-1.3", "apache-2.0", False),
])
def test_licence_table(source, model, ok):
    found = licenses.check({"src": source}, model)
    assert (found == []) == ok, found
    if not ok:
        f = found[0]
        assert f["blocks"] and f["source"] == "src" and f["licence"] == source and f["model_licence"] == model
        assert "drop the source 'src'" in f["fix"] and "--force" in f["fix"]


def test_licence_reasons_and_unknown_licences():
    sa = licenses.check({"wiki": "CC-BY-SA-4.0"}, "apache-2.0")[0]
    assert "share-alike" in sa["reason"] and "governance.license to cc-by-sa-4.0" in sa["fix"]
    nc = licenses.check({"forum": "CC-BY-NC-4.0"}, "mit")[0]
    assert "non-commercial" in nc["reason"]
    msg = licenses.message(sa)
    assert all(s in msg for s in ("'wiki'", "CC-BY-SA-4.0", "apache-2.0", "governance.license", "fix:"))
    for lic in ("unknown", "", "Made-Up-1.0"):
        warn = licenses.check({"x": lic}, "apache-2.0", unknown="warn")
        block = licenses.check({"x": lic}, "apache-2.0", unknown="block")
        assert len(warn) == len(block) == 1 and not warn[0]["blocks"] and block[0]["blocks"]
    rows = licenses.verdicts({"a": "MIT", "b": "CC-BY-SA-4.0", "c": "unknown"}, "apache-2.0")
    assert [r["verdict"] for r in rows] == ["ok", "conflict", "warn"]


@pytest.fixture(scope="module")
def share_alike(tiny_run, tmp_path_factory):
    """The tiny project with its source under CC-BY-SA-4.0 and the model under apache-2.0, built up to save."""
    root = tmp_path_factory.mktemp("licence") / "proj"
    shutil.copytree(tiny_run[0], root)
    spec = {**TINY, "data": {"sources": [{**TINY["data"]["sources"][0], "license": "CC-BY-SA-4.0"}]}}
    (root / "lmwright.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    lmwright.run(root, until="save", reporter=quiet())
    return root


def test_export_refuses_a_licence_conflict_with_the_reason(share_alike):
    out = share_alike / "lmwright-out" / "export" / "blocked"
    r = CliRunner().invoke(app, ["export", "--format", "hf", "-C", str(share_alike), "--out", str(out)])
    assert isinstance(r.exception, LmwrightError) and not out.exists()
    msg = str(r.exception)
    assert all(s in msg for s in ("not exported", "'pydocs'", "CC-BY-SA-4.0", "apache-2.0", "share-alike",
                                  "governance.license to cc-by-sa-4.0", "drop the source"))
    forced = CliRunner().invoke(app, ["export", "-C", str(share_alike), "--out", str(out), "--force"])
    assert isinstance(forced.exception, LmwrightError) and "--reason" in str(forced.exception)
    ok = CliRunner().invoke(app, ["export", "-C", str(share_alike), "--out", str(out), "--force", "--reason",
                                  "counsel cleared it", "--json"])
    assert ok.exit_code == 0, ok.output
    audit = Store(Workspace.open(share_alike).store_url).audit_log()[-1]
    assert audit.action == "export" and audit.detail["forced"] and audit.detail["reason"] == "counsel cleared it"
    # the model's own card says publishing is blocked
    assert "**Publishing is blocked**" in (share_alike / "lmwright-out" / "model" / "README.md").read_text()
    # the fix: the model under the source's licence
    fixed = CliRunner().invoke(app, ["export", "-C", str(share_alike), "--out", str(out), "--json",
                                     "--set", "governance.license=CC-BY-SA-4.0"])
    assert fixed.exit_code == 0, fixed.output
    assert ModelCard.load(out / "README.md").data.license == "cc-by-sa-4.0"


def test_the_promotion_gate_fails_on_a_licence_conflict(share_alike):
    from lmwright.core import registry
    from lmwright.ops.registry import gate, promote

    ws = Workspace.open(share_alike)
    m = registry.version(Store(ws.store_url), "tiny@latest")
    failures = [f for f in gate(ws, m, "challenger").failures if f.startswith("licence")]
    assert len(failures) == 1 and "'pydocs' (CC-BY-SA-4.0)" in failures[0] and "share-alike" in failures[0]
    with pytest.raises(LmwrightError, match="licence of source 'pydocs'"):
        promote(ws, f"tiny@{m.version}", "challenger")
    cleared = Workspace.open(share_alike, ["governance.license=cc-by-sa-4.0"])
    assert not [f for f in gate(cleared, m, "challenger").failures if f.startswith("licence")]
    default = Workspace.open(share_alike, ["data.sources.0.license=PSF-2.0"])  # the spec now; the lineage decides
    assert [f for f in gate(default, m, "challenger").failures if f.startswith("licence")]
