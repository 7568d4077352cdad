"""`lmwright evaluate` and `lmwright test`: external files of each task, the test-split guard, the record of
test evaluations and the repeat warning, cross-validation, lm-evaluation-harness agreement, and the report card
opened in a real browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import lmwright
from lmwright.cli import app
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.data.split import SplitGuardError, final_test, split_path
from lmwright.errors import LmwrightError
from lmwright.spec import SpecError, load_spec
from tests.conftest import quiet


def _invoke(*args):
    return CliRunner().invoke(app, list(args))


def _fails(*args) -> str:
    """The message of the LmwrightError a command stops with (the CLI prints it and exits 2)."""
    r = _invoke(*args)
    assert isinstance(r.exception, LmwrightError), r.output
    return str(r.exception)


def _json(r) -> dict:
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _labelled(root: Path) -> list[dict]:
    """Validation docstrings of two modules, labelled by module: a small real classification set."""
    docs = pq.read_table(lmwright.run(root, until="split", reporter=quiet())["split"].path / "train.parquet").to_pylist()
    rows = [{"text": d["text"][:200], "label": d["locator"].split(".")[0]} for d in docs
            if d["locator"].split(".")[0] in ("json", "csv")]
    assert len({r["label"] for r in rows}) == 2
    return rows


def test_the_test_split_is_refused_outside_the_final_evaluation(tiny_run, tmp_path):
    root, out = tiny_run
    with pytest.raises(SplitGuardError, match="lmwright test"):
        split_path(out["tokenize"].path, "test", ".npy")
    with final_test():
        assert split_path(out["tokenize"].path, "test", ".npy").exists()
    assert "read only by the final evaluation" in _fails("evaluate", "tiny", "--split", "test", "-C", str(root))


def test_training_early_stopping_and_evaluation_never_read_test(tiny_copy, monkeypatch):
    opened: list[str] = []
    real_load, real_read = np.load, pq.read_table
    monkeypatch.setattr(np, "load", lambda p, *a, **k: (opened.append(str(p)), real_load(p, *a, **k))[1])
    monkeypatch.setattr(pq, "read_table", lambda p, *a, **k: (opened.append(str(p)), real_read(p, *a, **k))[1])
    out = lmwright.run(tiny_copy, ["train.early_stopping.enabled=true", "train.max_steps=16"], until="evaluate",
                       reporter=quiet())
    assert out["pretrain"].status == out["evaluate"].status == "done"
    assert any("val" in p for p in opened) and not any(Path(p).name.startswith("test.") for p in opened)


def test_a_test_evaluation_is_recorded_once_and_a_repeat_warns(tiny_copy):
    ws = Workspace.open(tiny_copy)
    store = Store(ws.store_url)
    digest = lmwright.run(tiny_copy, reporter=quiet())["save"].digest
    assert [t.via for t in store.test_evaluations(digest)] == ["pipeline"]
    r = _invoke("test", "-C", str(tiny_copy))  # cached: the recorded figures, no second evaluation
    assert r.exit_code == 0 and "these are the recorded figures" in r.output
    assert len(store.test_evaluations(digest)) == 1
    r = _invoke("test", str(tiny_copy / "lmwright-out" / "model"), "-C", str(tiny_copy), "--json")
    assert r.exit_code == 0, r.output
    assert "was already evaluated on the test split 1 time(s)" in r.stderr
    rows = store.test_evaluations(digest)  # the published copy is recognised as the same model
    assert [t.via for t in rows] == ["pipeline", "cli"]
    assert rows[1].metrics["bits_per_byte"] == pytest.approx(rows[0].metrics["bits_per_byte"])


def test_evaluate_a_classification_file(tiny_copy, tmp_path):
    rows = _labelled(tiny_copy)
    f = _write_jsonl(tmp_path / "modules.jsonl", rows)
    res = _json(_invoke("evaluate", "tiny", "--file", str(f), "--task", "classify", "-C", str(tiny_copy), "--json"))
    cm = np.array(res["confusion"])
    assert res["labels"] == ["csv", "json"] and cm.sum() == len(rows) == res["n"]
    assert res["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert 0 <= res["roc_auc"] <= 1 and 0 <= res["f1_macro"] <= 1
    lo, hi = res["ci"]["accuracy"]
    assert lo <= res["accuracy"] <= hi
    assert (tiny_copy / "lmwright-out" / "eval" / "confusion_modules.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_generation_and_lm_files(tiny_copy, tmp_path):
    f = _write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "The json module", "reference": " encodes JSON"},
                                             {"prompt": "Return a new", "reference": " list"}])
    res = _json(_invoke("evaluate", "tiny", "--file", str(f), "--task", "generate", "-C", str(tiny_copy), "--json"))
    assert {"bleu", "chrf", "rouge1", "rouge2", "rouge_l", "exact_match"} <= set(res) and res["n"] == 2
    f = _write_jsonl(tmp_path / "texts.jsonl", [{"body": "Return a new list of the items."} for _ in range(3)])
    res = _json(_invoke("evaluate", "tiny", "--file", str(f), "--text-field", "body", "-C", str(tiny_copy), "--json"))
    assert res["documents"] == 3 and res["bits_per_byte"] > 0 and "length" in res["slices"]


def test_bad_evaluation_files_name_the_line_and_field(tiny_copy, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "fine"}\n{not json}\n')
    assert "bad.jsonl, line 3: not valid JSON" in _fails("evaluate", "tiny", "--file", str(bad), "-C", str(tiny_copy))
    missing = _write_jsonl(tmp_path / "m.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    msg = _fails("evaluate", "tiny", "--file", str(missing), "--task", "classify", "-C", str(tiny_copy))
    assert "m.jsonl, line 2: field 'label' is missing" in msg
    assert "registered names: tiny" in _fails("evaluate", "nosuchmodel", "-C", str(tiny_copy))


def test_acceptance_criteria_are_checked_when_the_spec_loads(tmp_path):
    p = tmp_path / "lmwright.yaml"
    p.write_text("requirements:\n  acceptance:\n    - test.bits_per_byte is small\n")
    with pytest.raises(SpecError, match="line 3.*METRIC OP NUMBER"):
        load_spec(p)


def test_cross_validation_is_stratified_and_resumes(tiny_copy):
    args = ["cv", "-C", str(tiny_copy), "--folds", "3", "--set", "cv.trial_overrides=[train.max_steps=6]", "--json"]
    res = _json(_invoke(*args))
    assert res["k"] == 3 and res["stratify_by"] == "label" and len(res["folds"]) == 3
    held = [f["heldout_docs"] for f in res["folds"]]
    assert max(held) - min(held) <= 1
    for lab in res["folds"][0]["heldout_labels"]:  # each chapter spread evenly over the folds
        counts = [f["heldout_labels"][lab] for f in res["folds"]]
        assert max(counts) - min(counts) <= 1, lab
    assert res["mean_bits_per_byte"] == pytest.approx(np.mean([f["bits_per_byte"] for f in res["folds"]]))
    again = _json(_invoke(*args))  # every fold's result is kept: a rerun (or a resumed one) redoes nothing
    assert again["folds"] == res["folds"]


@pytest.mark.slow
def test_lm_evaluation_harness_agrees_with_lmwright(tiny_run, tmp_path):
    """EleutherAI's harness scores the exported model on a local task built from the project's validation
    documents; its bits-per-byte equals lmwright's on the same file (same windows: full context for the last one)."""
    root, out = tiny_run
    val = pq.read_table(out["split"].path / "val.parquet").to_pylist()
    data = _write_jsonl(tmp_path / "val.jsonl", [{"text": d["text"]} for d in val])
    (tmp_path / "lmwright_val.yaml").write_text(
        "task: lmwright_val\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{text}}'\nmetric_list:\n  - metric: bits_per_byte\nmetadata:\n  version: 1.0\n")
    model = root / "lmwright-out" / "model"
    script = (
        "import json, lm_eval\nfrom lm_eval.tasks import TaskManager\n"
        f"r = lm_eval.simple_evaluate(model='hf', model_args='pretrained={model},dtype=float32,max_length=32,"
        "add_bos_token=False', tasks=['lmwright_val'], "
        f"task_manager=TaskManager(include_path='{tmp_path}'), device='cpu', batch_size=1)\n"
        "print('RESULT', json.dumps(r['results']['lmwright_val']))\n")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    harness = json.loads(p.stdout.split("RESULT", 1)[1])["bits_per_byte,none"]
    mine = _json(_invoke("evaluate", str(model), "--file", str(data), "-C", str(root), "--json"))["bits_per_byte"]
    assert harness == pytest.approx(mine, rel=1e-5)


@pytest.mark.slow
def test_report_card_in_a_browser(tiny_copy, tmp_path):
    """A second model version, a tuning study, cross-validation and a classification eval set: the card shows
    them all, and every section and image is there when Chromium opens it."""
    from playwright.sync_api import sync_playwright

    data = _write_jsonl(tiny_copy / "modules.jsonl", _labelled(tiny_copy))
    quick = ["train.max_steps=6", "train.eval_every=3"]
    _json(_invoke("tune", "-C", str(tiny_copy), "--set", "tune.trials=2", "--set", f"tune.trial_overrides={quick}",
                  "--json"))
    _json(_invoke("cv", "-C", str(tiny_copy), "--folds", "2", "--set", f"cv.trial_overrides={quick}", "--json"))
    sets = [{"name": "modules", "path": data.name, "task": "classify"}]
    out = lmwright.run(tiny_copy, ["train.max_steps=16", f"eval.sets={json.dumps(sets)}"], reporter=quiet())
    assert out["report"].status == "done"
    html = tiny_copy / "lmwright-out" / "report.html"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(html.as_uri())
        ids = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
        for section in ("summary", "requirements", "metrics", "generation", "comparison-with-the-previous-version",
                        "training-curve", "hyper-parameter-search", "cross-validation", "slices-by-label",
                        "slices-by-length", "eval-set--modules--classification-", "risk--memorisation--canaries-",
                        "risk--verbatim-continuation", "risk--counterfactual-bias",
                        "risk--pii-and-blocklist-in-sampled-generations", "samples", "spec"):
            assert section in ids, (section, ids)
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
        browser.close()
    srcs = {src for src, _ in images}
    assert {"training_curve.png", "lr_curve.png", "confusion_modules.png", "tune_optimization_history.png"} <= srcs
    assert all(width > 100 for _, width in images), images  # each one loaded
    md = (tiny_copy / "lmwright-out" / "report.md").read_text()
    assert "| test.bits_per_byte <= 6 |" in md and ("| PASS |" in md or "| FAIL |" in md)  # the tiny spec's
    assert "previous (" in md and "val.bits_per_byte" in md  # the comparison table names the earlier version
