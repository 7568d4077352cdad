"""The pipeline end to end on the tiny project: outputs, caching, partial runs, status, report and API."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

import lmwright
from lmwright.core.pipeline import stage_status
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.stages.registry import STAGES as REGISTRY
from tests.conftest import quiet

STAGES = ["collect", "clean", "dedup", "split", "card", "tokenizer", "tokenize", "pretrain", "evaluate", "save",
          "test", "sft", "classify", "preference", "report"]


def test_stage_order():
    assert list(REGISTRY) == STAGES


def test_full_run_publishes_model_report_and_metrics(tiny_run):
    root, out = tiny_run
    assert list(out) == STAGES and all(o.status == "done" for o in out.values())
    pub = root / "lmwright-out"
    for f in ("model/config.json", "model/model.safetensors", "model/tokenizer.json", "model/tokenizer_config.json",
              "model/generation_config.json", "report.md", "report.html", "training_curve.png", "lr_curve.png", "metrics.json",
              "test_metrics.json", "risk.json", "requirements.json"):
        assert (pub / f).exists(), f
    metrics = {**json.loads((pub / "metrics.json").read_text()), **json.loads((pub / "test_metrics.json").read_text())}
    for split in ("val", "test"):
        m = metrics[split]
        assert m["bits_per_byte"] > 0 and m["perplexity"] == pytest.approx(2.718281828 ** m["loss"], rel=1e-6)
    h = json.loads((out["pretrain"].path / "history.json").read_text())
    assert h["val_step"] == [8, 16, 24] and h["loss"][-1] < h["loss"][0]  # it learns


def test_second_run_is_all_cached_and_fast(tiny_copy):
    t0 = time.perf_counter()
    out = lmwright.run(tiny_copy, reporter=quiet())
    assert all(o.status == "cached" for o in out.values())
    assert time.perf_counter() - t0 < 15
    assert {s["state"] for s in stage_status(Workspace.open(tiny_copy), REGISTRY)} == {"cached"}


def test_changing_max_steps_reruns_pretrain_and_after_only(tiny_copy):
    ws = Workspace.open(tiny_copy, ["train.max_steps=16"])
    assert [s["state"] for s in stage_status(ws, REGISTRY)] == ["cached"] * 7 + ["stale"] * 8  # fine-tuning included
    out = lmwright.run(tiny_copy, ["train.max_steps=16"], reporter=quiet())
    assert [o.status for o in out.values()] == ["cached"] * 7 + ["done"] * 8
    assert out["pretrain"].summary["steps"] == 16


def test_until_from_and_force(tiny_copy):
    out = lmwright.run(tiny_copy, until="split", reporter=quiet())
    assert list(out) == ["collect", "clean", "dedup", "split"] and all(o.status == "cached" for o in out.values())
    out = lmwright.run(tiny_copy, from_="evaluate", reporter=quiet())
    assert [n for n, o in out.items() if o.status == "done"] == ["evaluate", "save", "test", "sft", "classify",
                                                                 "preference", "report"]
    out = lmwright.run(tiny_copy, force=("dedup",), reporter=quiet())
    assert [n for n, o in out.items() if o.status == "done"] == ["dedup"]  # same content: downstream stays cached
    with pytest.raises(LmwrightError, match="no such stage"):
        lmwright.run(tiny_copy, until="pretrian", reporter=quiet())


def test_corrupted_artifact_is_caught_on_read(tiny_copy):
    ws = Workspace.open(tiny_copy)
    out = lmwright.run(tiny_copy, until="split", reporter=quiet())
    (ws.artifacts_dir / out["split"].digest / "train.parquet").write_bytes(b"garbage")
    with pytest.raises(LmwrightError, match="failed its hash check"):
        lmwright.run(tiny_copy, force=("tokenizer",), reporter=quiet())


def test_report_has_every_section(tiny_run):
    root, out = tiny_run
    html = (root / "lmwright-out" / "report.html").read_text()
    for section in ("summary", "data", "splits", "model", "training-curve", "metrics", "samples", "spec"):
        assert f"<section id='{section}'>" in html, section
    assert "<img src='training_curve.png'" in html and "<img src='lr_curve.png'" in html
    assert "basic.too_short" in html and "MFU" in html
    png = (root / "lmwright-out" / "training_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = (root / "lmwright-out" / "report.md").read_text()
    assert "| collect |" in md and "bits per byte" in md and "![Training curve](training_curve.png)" in md


def test_python_api_load_and_generate(tiny_run):
    root, _ = tiny_run
    model = lmwright.load_model(root)
    tok = lmwright.load_tokenizer(root / "lmwright-out" / "model")
    logits = model(torch.tensor([tok.encode("The json module").ids]))
    assert logits.shape[-1] == tok.get_vocab_size()
    a = lmwright.generate(model, tok, "The json", max_new_tokens=8, temperature=0.9, top_k=20, seed=1)
    b = lmwright.generate(model, tok, "The json", max_new_tokens=8, temperature=0.9, top_k=20, seed=1)
    assert a == b and isinstance(a, str)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lmwright", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_status_evaluate_generate_json(tiny_copy):
    r = _cli("status", "-C", str(tiny_copy), "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert [s["state"] for s in st["stages"]] == ["cached"] * 15 and st["models"][0]["params"] > 0
    assert {d["name"] for d in st["datasets"]} >= {"raw", "split/train"}
    r = _cli("evaluate", "-C", str(tiny_copy), "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["status"] == "cached" and ev["val"]["bits_per_byte"] > 0
    r = _cli("generate", "The json module", "-C", str(tiny_copy), "--max-tokens", "5", "--seed", "3")
    assert r.returncode == 0 and r.stdout.startswith("The json module")
    r = _cli("status", "-C", str(tiny_copy))
    assert r.returncode == 0 and "pretrain" in r.stdout and "cached" in r.stdout


def test_cli_run_prints_where_things_are(tiny_copy):
    r = _cli("run", "-C", str(tiny_copy))
    assert r.returncode == 0, r.stderr
    assert "every stage is cached" in r.stderr
    for word in ("model", "report", "metrics"):
        assert f"{tiny_copy}/lmwright-out" in r.stderr and word in r.stderr


@pytest.mark.parametrize("stage_name", STAGES)
def test_each_stage_is_a_command_with_json(tiny_copy, stage_name):
    from typer.testing import CliRunner

    from lmwright.cli import app

    finetune = stage_name in ("sft", "classify", "preference")  # `lmwright finetune TASK`
    args = ["finetune", stage_name] if finetune else [stage_name]
    r = CliRunner().invoke(app, [*args, "-C", str(tiny_copy), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["task" if finetune else "stage"] == stage_name and data["headline"]
    # a fine-tuning command switches its recipe on: preference (off in `lmwright run`) runs here
    assert data["status"] == ("done" if stage_name == "preference" else "cached")


def test_store_url_points_anywhere(tmp_path):
    from tests.conftest import TINY, make_project

    db = tmp_path / "elsewhere" / "meta.db"
    spec = {**TINY, "project": {**TINY["project"], "store_url": f"sqlite:///{db}"}}
    root = make_project(tmp_path / "p", spec)
    lmwright.run(root, until="split", reporter=quiet())
    assert db.exists() and not (root / ".lmwright" / "lmwright.db").exists()
    states = stage_status(Workspace.open(root, ["train.max_steps=2"]), REGISTRY)
    assert {s["state"] for s in states} >= {"cached", "new"}


def test_a_moved_project_keeps_its_cache(tmp_path):
    import shutil

    from tests.conftest import make_project

    src = make_project(tmp_path / "a", {"data": {"sources": [{"kind": "files", "paths": ["c/*.txt"]}]}})
    (src / "c").mkdir()
    (src / "c" / "x.txt").write_text("A file with enough words in it to be a document of its own. " * 3)
    first = lmwright.run(src, until="collect", reporter=quiet())["collect"]
    shutil.copytree(src, tmp_path / "b")  # keeps file times, like a move
    again = lmwright.run(tmp_path / "b", until="collect", reporter=quiet())["collect"]
    assert again.status == "cached" and again.digest == first.digest


def test_dataset_card(tiny_run):
    root, out = tiny_run
    card = root / "lmwright-out" / "dataset_card"
    text = (card / "README.md").read_text()
    meta = text.split("---")[1]
    for field in ("license: PSF-2.0", "language:", "size_categories:", "task_categories:"):
        assert field in meta, field
    for section in ("## Sources", "## Size and splits", "## Curation", "### Removals by reason", "### Personal data",
                    "### Deduplication", "## Languages and lengths"):
        assert section in text, section
    assert "basic.too_short" in text and "| pydocs | pydocs | PSF-2.0 | technical |" in text
    for png in ("languages.png", "lengths.png"):
        assert (card / png).read_bytes()[:4] == b"\x89PNG"


# -- code versions, packages and failures --------------------------------------------------------------------------


def test_each_stage_hashes_every_module_it_can_run():
    """The modules the issue found missing from hand-kept lists are in the derived closures."""
    from lmwright.core.pipeline import stage_code

    stages = REGISTRY
    reach = {name: stage_code(st)[1].internal for name, st in stages.items()}
    assert {"lmwright.data.filters.pii", "lmwright.data.filters.blocklist", "lmwright.data.rows"} <= reach["evaluate"]
    assert "lmwright.model.fused_ce" in reach["pretrain"]
    for kind in ("sft", "classify", "preference"):
        assert {"lmwright.train.loop", "lmwright.train.optim", "lmwright.train.checkpoint",
                "lmwright.evaluate.classify", "lmwright.finetune.worker"} <= reach[kind]
    assert "lmwright.train.worker" in reach["pretrain"]  # launched by name with `python -m`
    assert not any(m in ("lmwright.serve.api", "lmwright.cli") for r in reach.values() for m in r)
    assert "lmwright.train.loop" not in reach["clean"] and "torch" not in stage_code(stages["dedup"])[1].external
    # importing data.filters.pii runs data/filters/__init__.py first, which imports every filter (and ftfy)
    assert "lmwright.data.filters" in reach["evaluate"] and "ftfy" in stage_code(stages["evaluate"])[1].external
    # tokenize plants the canaries (data/canaries.py) without reaching the evaluation or model code: editing the
    # engine must not re-tokenize, and so retrain, every project
    assert not any(m.startswith(("lmwright.evaluate", "lmwright.model")) for m in reach["tokenize"])


def test_code_version_follows_the_bytes_of_the_closure(tiny_copy, monkeypatch):
    from lmwright.core import closure

    original = closure.module_source

    def states_after_editing(module: str) -> dict[str, str]:
        monkeypatch.setattr(closure, "module_source", lambda m: original(m) + (b"# edit" if m == module else b""))
        try:
            return {s["stage"]: s["state"] for s in stage_status(Workspace.open(tiny_copy), REGISTRY)}
        finally:
            monkeypatch.setattr(closure, "module_source", original)

    after_pretrain = set(STAGES[STAGES.index("pretrain"):])
    states = states_after_editing("lmwright.model.fused_ce")
    assert {s for s, v in states.items() if v == "stale"} == after_pretrain
    states = states_after_editing("lmwright.data.filters.pii")  # clean's, and evaluate's risk checks'
    assert {s for s, v in states.items() if v == "stale"} == set(STAGES[1:])
    assert set(states_after_editing("lmwright.serve.api").values()) == {"cached"}


@pytest.mark.slow
def test_editing_a_real_module_file_makes_its_stages_stale(tiny_copy, tmp_path):
    """On a copy of the package: an edit to data/rows.py (evaluation and fine-tuning read files through it) makes
    evaluate and what follows stale and leaves pretraining cached; an edit to the server changes nothing."""
    import os
    import shutil
    from pathlib import Path

    src = tmp_path / "src"
    shutil.copytree(Path(lmwright.__file__).parent, src / "lmwright", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(src)}

    def stale() -> set[str]:
        r = subprocess.run([sys.executable, "-m", "lmwright", "status", "--json", "-C", str(tiny_copy)], env=env,
                           capture_output=True, text=True, check=True)
        return {s["stage"] for s in json.loads(r.stdout)["stages"] if s["state"] != "cached"}

    probe = subprocess.run([sys.executable, "-c", "import lmwright; print(lmwright.__file__)"], env=env,
                           capture_output=True, text=True, check=True)
    assert probe.stdout.startswith(str(src))
    assert stale() == set()
    rows = src / "lmwright" / "data" / "rows.py"
    rows.write_text(rows.read_text() + "\n# an edit\n")
    assert stale() == {"evaluate", "save", "test", "sft", "classify", "preference", "report"}
    rows.write_text(rows.read_text().removesuffix("\n# an edit\n"))
    api = src / "lmwright" / "serve" / "api.py"
    api.write_text(api.read_text() + "\n# an edit\n")
    assert stale() == set()


def _cli_with(prelude: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    """`lmwright ARGS` in a fresh interpreter after running `prelude` (to take a package away, or break a stage)."""
    code = f"import sys\n{prelude}\nsys.argv = ['lmwright', *{list(args)!r}]\nfrom lmwright.cli import main\nmain()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


def test_a_missing_package_stops_the_run_before_any_stage_starts(tmp_path):
    from tests.conftest import make_project

    root = make_project(tmp_path / "p")
    r = _cli_with("sys.modules['peft'] = None", "run", "-C", str(root))
    assert r.returncode == 2, r.stderr
    assert "stages sft, classify need peft" in r.stderr and "fix: pip install 'peft>=" in r.stderr
    assert "Traceback" not in r.stderr
    from lmwright.core.store import Store

    assert Store(Workspace.open(root).store_url).runs(limit=10) == []  # nothing started


def test_stage_packages_follow_the_spec():
    from lmwright.core.pipeline import stage_packages
    from lmwright.spec import load_spec

    stages = REGISTRY
    assert "peft" in stage_packages(stages["sft"], load_spec(None))
    assert stage_packages(stages["sft"], load_spec(None, ["finetune.sft.enabled=false"])) == []
    assert "ray" not in stage_packages(stages["clean"], load_spec(None))  # an extra: only when the spec uses it
    assert "ray" in stage_packages(stages["clean"], load_spec(None, ["data.executor.kind=ray"]))
    assert "mlflow" in stage_packages(stages["pretrain"], load_spec(None, ["train.log_to=[mlflow]"]))


def test_a_failing_stage_prints_its_name_cause_and_fix_and_logs_the_traceback(tmp_path):
    from tests.conftest import make_project

    root = make_project(tmp_path / "p")
    breaks = "import lmwright.data.split as s\ns.assign_splits = lambda *a: 1 / 0"
    r = _cli_with(breaks, "run", "-C", str(root), "--until", "split")
    assert r.returncode == 2
    assert "stage 'split' failed: ZeroDivisionError: division by zero" in r.stderr
    assert "what to do: run the same command again" in r.stderr and "Traceback" not in r.stderr
    logs = list((root / ".lmwright" / "logs").glob("*-split.log"))
    assert len(logs) == 1 and "Traceback (most recent call last)" in logs[0].read_text()
    assert str(logs[0]) in r.stderr.replace("\n", "")
    r = _cli_with(breaks, "run", "-C", str(root), "--until", "split", "--debug")
    assert r.returncode == 2 and "Traceback (most recent call last)" in r.stderr and ", in split" in r.stderr


def test_every_package_the_code_imports_is_declared_and_optional_ones_are_extras():
    """What the commands can reach imports only the base install's packages, or an extra's behind a message
    naming it: a package missing from pyproject.toml (peft was, hidden by the test extra) fails here."""
    from lmwright.core import closure, packages

    reach = closure.closure(["lmwright.cli", "lmwright.stages.registry", "lmwright.api"])
    assert {"lmwright.finetune.lora", "lmwright.export.gguf", "lmwright.serve.api"} <= reach.internal
    declared = packages.declared()
    assert declared, "lmwright's metadata: install the project (pip install -e .)"
    undeclared = sorted(p for p in reach.external if packages.distribution(p) not in declared)
    assert undeclared == [], f"imported but not in pyproject.toml: {undeclared}"
    optional = sorted(p for p in reach.external if packages.is_optional(p))
    assert optional == ["mlflow", "onnx", "onnxruntime", "ray"], optional  # each says which extra to install
    assert {"peft", "gguf", "starlette", "phonenumbers", "torch"} <= {p for p in reach.external
                                                                     if not packages.is_optional(p)}


def test_advice_names_a_package_only_when_a_third_party_one_is_missing(tmp_path):
    from lmwright.core.pipeline import advice, write_log

    assert "pip install 'peft>=" in advice(ModuleNotFoundError("No module named 'peft'", name="peft"))
    for exc in (ModuleNotFoundError("No module named 'lmwright.x'", name="lmwright.x"), ImportError("boom"),
                KeyError("k")):
        assert "pip install" not in advice(exc) and "likely a bug in lmwright" in advice(exc)
    assert "free disk space" in advice(OSError(28, "No space left on device"))
    assert write_log(tmp_path / "logs", "x", "trace").read_text() == "trace"
    (tmp_path / "file").write_text("")
    assert write_log(tmp_path / "file" / "logs", "x", "trace") is None  # cannot be written: no second error
