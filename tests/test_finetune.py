"""Fine-tuning: data shapes and quarantine, the chat template and its loss mask, LoRA (identity, merge, PEFT
parity, exact resume), DPO, the classifier in `transformers`, an HF base, and the default pipeline's recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lmwright.chat_template import IGNORE, encode_conversation, pack
from lmwright.cli import app
from lmwright.finetune import formats, lora
from lmwright.finetune.objectives import Classifier
from lmwright.model.hf import load_hf
from lmwright.spec import Spec
from lmwright.tokenizer import load_tokenizer
from tests.conftest import TINY, quiet


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _model_dir(tiny_run) -> Path:
    return tiny_run[1]["save"].path


def test_each_sft_shape_parses_and_malformed_rows_are_quarantined(tmp_path):
    rows = [
        {"instruction": "Add", "input": "1 and 2", "output": "3"},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
                           {"from": "human", "value": "Again"}, {"from": "gpt", "value": "Hello again"}]},
        {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hi"}]},
        "{not json",
        {"instruction": "No answer"},
        {"conversations": [{"from": "wizard", "value": "?"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        [1, 2],
        {"text": "a classification row in an SFT file"},
    ]
    got = formats.load(_jsonl(tmp_path / "sft.jsonl", rows), "sft")
    assert got.read == 9 and len(got.rows) == 3 and len(got.quarantined) == 6  # kept + quarantined = read
    assert got.summary()["quarantine_reasons"] == {"bad line": 2, "missing field": 1, "bad role": 1,
                                                   "no assistant turn": 1, "unknown shape": 1}
    assert got.formats == {"alpaca": 1, "sharegpt": 1, "openai": 1}
    assert got.rows[0] == [{"role": "user", "content": "Add\n\n1 and 2"}, {"role": "assistant", "content": "3"}]
    assert [m["role"] for m in got.rows[1]] == ["user", "assistant", "user", "assistant"]
    why = {q["line"]: q["reason"] for q in got.quarantined}
    assert why[4].startswith("bad line: not valid JSON") and "'output'" in why[5] and "wizard" in why[6]
    assert why[7].startswith("no assistant turn") and why[8].startswith("bad line: not an object")
    assert why[9].startswith("unknown shape") and all(q["file"].endswith("sft.jsonl") for q in got.quarantined)
    # Parquet, and the other two tasks
    pq.write_table(pa.Table.from_pylist([{"text": "a", "label": "x"}, {"text": "", "label": "y"}]), tmp_path / "c.parquet")
    c = formats.load(tmp_path / "c.parquet", "classify")
    assert len(c.rows) == 1 and "'text'" in c.quarantined[0]["reason"] and c.quarantined[0]["line"] == 2
    p = formats.load(_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                                  {"prompt": "q", "chosen": "a", "rejected": "a"}]), "preference")
    assert len(p.rows) == 1 and p.quarantined[0]["reason"].startswith("same answers")


def test_template_ids_match_transformers_and_only_assistant_tokens_carry_loss(tiny_run):
    from transformers import AutoTokenizer

    model_dir = _model_dir(tiny_run)
    tok = load_tokenizer(model_dir)
    msgs = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What does json do?"},
            {"role": "assistant", "content": "It encodes JSON."}, {"role": "user", "content": "And csv?"},
            {"role": "assistant", "content": "It reads CSV."}]
    ids, labels = encode_conversation(tok, msgs)
    hf = AutoTokenizer.from_pretrained(model_dir)
    rendered = hf.apply_chat_template(msgs, tokenize=False)
    assert ids == hf(rendered, add_special_tokens=False)["input_ids"]
    learned = [i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    assert tok.decode(learned, skip_special_tokens=False) == "It encodes JSON.<|end|>It reads CSV.<|end|>"
    assert all(lab in (IGNORE, i) for i, lab in zip(ids, labels, strict=True))
    rows, labs, _ = pack([(ids, labels)] * 3, 16, 0, packing=True)
    assert rows.shape[1] == 17 and (labs != IGNORE).sum() == 3 * len(learned)  # packing loses no labelled token


def test_lora_starts_as_the_base_merges_exactly_and_peft_loads_the_adapter(tiny_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model_dir = _model_dir(tiny_run)
    base = load_hf(model_dir)
    ids = torch.randint(0, base.cfg.vocab_size, (2, 20))
    with torch.no_grad():
        ref = base(ids)
    model = lora.add_lora(load_hf(model_dir), 4, 8.0, 0.0, ["q_proj", "v_proj", "gate_proj", "down_proj"])
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {n for n, _ in model.named_parameters()
                                                                          if "lora_" in n}
    with torch.no_grad():
        assert torch.equal(model(ids), ref)  # B starts at zero: the adapted model is the base
        for _, layer in lora.lora_layers(model):  # as if trained
            layer.lora_B["default"].weight.normal_(0, 0.2)
        tuned = model(ids)
    assert (tuned - ref).abs().max() > 1e-3
    lora.save_adapter(model, tmp_path / "adapter", str(model_dir))
    hf = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                   tmp_path / "adapter").eval()
    with torch.no_grad():
        assert (hf(ids).logits - tuned).abs().max() < 1e-4  # PEFT reads our adapter onto transformers' model
        merged = lora.merge(model)(ids)
    assert (merged - tuned).abs().max() < 1e-5 and not lora.lora_layers(model)


def _spec(**finetune) -> Spec:
    spec = Spec.model_validate({k: v for k, v in TINY.items() if k != "data"})
    for k, v in finetune.items():
        setattr(spec.finetune, k, v)
    return spec


def test_dpo_loss_falls_and_preference_accuracy_rises(tiny_run, tmp_path):
    from lmwright.finetune.recipes import preference

    pairs = [{"prompt": f"Which is right about item {i}?", "chosen": "The correct answer, plainly stated.",
              "rejected": f"wrong {i} wrong"} for i in range(24)]
    spec = _spec(steps=30, eval_every=10, method="full", lr=1e-3)
    spec.finetune.preference.data = str(_jsonl(tmp_path / "pairs.jsonl", pairs[:20]))
    spec.finetune.preference.val_data = str(_jsonl(tmp_path / "val.jsonl", pairs[20:]))
    spec.finetune.preference.lr = 1e-3
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    res = preference(spec, _model_dir(tiny_run), "tiny", None, out, work, quiet())
    assert res["tuned"]["dpo_loss"] < res["base"]["dpo_loss"] - 0.05
    assert res["tuned"]["preference_accuracy"] > 0.9 and res["base"]["preference_accuracy"] == 0.0
    assert res["tuned"]["likelihood_accuracy"] >= res["base"]["likelihood_accuracy"]
    hist = json.loads((out / "history.json").read_text())
    assert hist["val"][-1]["loss"] < hist["val"][0]["loss"] + 1e-6


def test_a_killed_lora_run_resumes_exactly(tiny_run, tmp_path, monkeypatch):
    from lmwright.finetune import loop, recipes

    rows = [{"instruction": f"Say {w}", "output": f"{w} {w}."} for w in ("one", "two", "three", "four", "five")] * 4
    spec = _spec(steps=6, checkpoint_every=3, eval_every=3)
    spec.finetune.lora.dropout = 0.1  # the RNG state must be restored too
    spec.finetune.sft.data = str(_jsonl(tmp_path / "sft.jsonl", rows))
    spec.finetune.sft.eval_examples = 0

    def run(name: str) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        recipes.sft(spec, _model_dir(tiny_run), "tiny", None, out, tmp_path / f"{name}-work", quiet())
        return load_file(str(out / "adapter" / "adapter_model.safetensors"))

    whole = run("whole")
    real_save = loop.save_checkpoint

    def save_then_die(work, step, *a, **k):
        real_save(work, step, *a, **k)
        raise KeyboardInterrupt  # killed right after the step-3 checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run("killed")
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed = run("killed")
    assert json.loads((tmp_path / "killed" / "history.json").read_text())["resumed_from"] == 3
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert any(v.abs().sum() > 0 for k, v in whole.items() if "lora_B" in k)


def test_the_default_pipeline_ends_with_an_assistant_and_a_classifier(tiny_run):
    from transformers import AutoModelForSequenceClassification

    root, outcomes = tiny_run
    sft, clf = outcomes["sft"].summary, outcomes["classify"].summary
    assert sft["registered_as"] == "tiny-assistant" and "rouge_l" in sft["tuned_figures"]
    assert sft["tuned_figures"]["val_loss"] < sft["base_figures"]["val_loss"]
    assert clf["registered_as"] == "tiny-classifier" and 0 <= clf["tuned_figures"]["f1_macro"] <= 1
    for summary, metric in ((sft, "rouge_l"), (clf, "accuracy"), (clf, "f1_macro")):  # bootstrap intervals
        lo, hi = summary["ci"]["tuned"][metric]
        assert lo <= summary["tuned_figures"][metric] + 1e-9 and summary["tuned_figures"][metric] <= hi + 1e-9
    assert outcomes["preference"].summary["skipped"]
    out = root / "lmwright-out"
    assert (out / "assistant" / "config.json").exists() and (out / "assistant_adapter" / "adapter_config.json").exists()
    assert "## Fine-tuning" in (out / "report.md").read_text()
    from lmwright.api import resolve_model
    from lmwright.core.workspace import Workspace
    from lmwright.export import export

    assistant = resolve_model(Workspace.open(root), "tiny-assistant")[0]
    assert (assistant / "config.json").exists()  # what serve, chat and export resolve the name to
    written = export(assistant, "gguf", root / "gguf-out")  # merged: exports like any other model
    assert Path(written["path"]).stat().st_size > 0
    # the classifier is transformers' LlamaForSequenceClassification, with the same logits
    path = outcomes["classify"].path / "model"
    hf = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    cfg = json.loads((path / "config.json").read_text())
    labels = [cfg["id2label"][str(i)] for i in range(cfg["num_labels"])]
    ours = Classifier(load_hf(_model_dir(tiny_run)), labels, cfg["pad_token_id"])
    ours.load_weights(load_file(str(path / "model.safetensors")))
    ids = torch.tensor([[1, 40, 41, 42, 43, cfg["pad_token_id"], cfg["pad_token_id"]], [1, 50, 51, 52, 53, 54, 55]])
    with torch.no_grad():
        assert (hf(ids).logits - ours.eval()(ids)).abs().max() < 1e-4
    # and its LoRA adapter, with the head as PEFT's modules_to_save, loads onto transformers' classifier of the base
    from peft import PeftModel

    bare = AutoModelForSequenceClassification.from_pretrained(_model_dir(tiny_run), num_labels=len(labels),
                                                              pad_token_id=cfg["pad_token_id"], dtype=torch.float32)
    peft = PeftModel.from_pretrained(bare, outcomes["classify"].path / "adapter").eval()
    with torch.no_grad():
        assert (peft(ids).logits - hf(ids).logits).abs().max() < 1e-4


def test_finetune_command_on_a_transformers_llama_base(tiny_copy, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    tok_dir = tiny_copy / "lmwright-out" / "model"
    tok = load_tokenizer(tok_dir)
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    base = tmp_path / "hf-llama"
    LlamaForCausalLM(cfg).save_pretrained(base)  # built from a config: no download
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (base / name).write_bytes((tok_dir / name).read_bytes())
    rows = [{"messages": [{"role": "user", "content": f"Name {i}"}, {"role": "assistant", "content": f"It is {i}."}]}
            for i in range(30)] + ['{"broken']
    data = _jsonl(tmp_path / "chat.jsonl", rows)
    r = CliRunner().invoke(app, ["finetune", "sft", "-C", str(tiny_copy), "--base", str(base), "--data", str(data),
                                 "--steps", "4", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout[r.stdout.index("{"):])
    assert res["data"]["quarantined"] == 1 and res["data"]["read"] == 31 and res["registered_as"] == "tiny-assistant"
    merged = AutoModelForCausalLM.from_pretrained(Path(res["path"]) / "model", dtype=torch.float32)
    assert merged.config.num_hidden_layers == 2
    q = [json.loads(x) for x in (Path(res["path"]) / "quarantine.jsonl").read_text().splitlines()]
    assert q[0]["line"] == 31 and q[0]["reason"].startswith("bad line: not valid JSON")
    assert np.isfinite(res["tuned_figures"]["val_loss"])


def test_full_fine_tuning_keeps_frozen_layers_and_embeddings(tiny_run, tmp_path):
    from lmwright.finetune.recipes import sft

    rows = [{"instruction": f"Repeat {w}", "output": f"{w}."} for w in ("alpha", "beta", "gamma", "delta")] * 5
    spec = _spec(steps=4, method="full", freeze_layers=1, freeze_embeddings=True, lr=1e-3, precision="bf16")
    spec.finetune.sft.data = str(_jsonl(tmp_path / "sft.jsonl", rows))
    spec.finetune.sft.eval_examples = 0
    out = tmp_path / "out"
    out.mkdir()
    res = sft(spec, _model_dir(tiny_run), "tiny", None, out, tmp_path / "work", quiet())
    before = load_file(str(_model_dir(tiny_run) / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    assert not (out / "adapter").exists() and res["method"] == "full"
    frozen = [k for k in before if k.startswith(("model.embed_tokens", "model.layers.0."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in before if k.startswith("model.layers.1.")
               and k.endswith("proj.weight"))  # the rest trained (under bf16 autocast)


@pytest.mark.slow
def test_two_processes_fine_tune_like_one_with_the_same_global_batch(tiny_copy):
    import lmwright

    same = ["finetune.classify.class_weights=none", "finetune.lora.dropout=0.0"]  # per-example means, no RNG
    one = lmwright.run(tiny_copy, same, until="classify", reporter=quiet())["classify"]
    two = lmwright.run(tiny_copy, [*same, "finetune.nproc=2"], until="classify", reporter=quiet())["classify"]
    assert two.digest != one.digest and two.status == "done"
    h1, h2 = (json.loads((o.path / "history.json").read_text()) for o in (one, two))
    assert len(h2["loss"]) == TINY["finetune"]["steps"]
    assert max(abs(a - b) for a, b in zip(h1["loss"], h2["loss"], strict=True)) < 1e-4
    a, b = (load_file(str(o.path / "model" / "model.safetensors")) for o in (one, two))
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert two.summary["tuned_figures"] == pytest.approx(one.summary["tuned_figures"], abs=1e-4)


def test_a_recipe_setting_reruns_that_recipe_only(tiny_copy):
    from lmwright.core.pipeline import stage_status
    from lmwright.core.workspace import Workspace
    from lmwright.stages.registry import STAGES

    def states(*overrides: str) -> dict:
        return {s["stage"]: s["state"] for s in stage_status(Workspace.open(tiny_copy, list(overrides)), STAGES)}

    st = states("finetune.sft.steps=3")
    assert (st["sft"], st["classify"], st["report"]) == ("stale", "cached", "stale")
    st = states("finetune.lora.r=4")  # shared by every recipe
    assert st["sft"] == st["classify"] == "stale"


def test_augmentation_adds_noisy_training_copies_and_never_touches_held_out_rows(tmp_path):
    from lmwright.finetune.recipes import augmented, load_rows
    from lmwright.spec import load_spec

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": f"The module number {i} encodes Python objects as text.",
                                        "label": "ab"[i % 2]}) + "\n" for i in range(40)))
    spec = load_spec(None, [f"finetune.classify.data={data}"])
    train, held, acct = load_rows("classify", spec.finetune.classify, None, 1, tmp_path, None)
    assert augmented("classify", train, spec.finetune.classify.augment, 1, acct) is train  # off by default
    spec.finetune.classify.augment.copies = 2
    noisy = augmented("classify", train, spec.finetune.classify.augment, 1, acct)
    assert noisy[:len(train)] == train and len(noisy) == 3 * len(train) and acct["augmented"] == 2 * len(train)
    copies = noisy[len(train):]
    originals = [r for r in train for _ in range(2)]  # each row's two copies follow each other
    assert [c["label"] for c in copies] == [o["label"] for o in originals]
    assert sum(c["text"] != o["text"] for c, o in zip(copies, originals, strict=True)) > len(copies) // 2
    assert load_rows("classify", spec.finetune.classify, None, 1, tmp_path, None)[1] == held  # held out: as it was


@pytest.mark.parametrize("kind", ["classify", "preference"])
def test_each_recipe_trains_and_validates_under_bf16_autocast(tiny_run, tmp_path, kind):
    # train.precision auto is bf16 on CPUs with bf16 units: validation inside the loop then runs under autocast too
    from lmwright.finetune.recipes import RECIPES

    words = ["alpha", "beta", "gamma", "delta", "omega"]
    if kind == "classify":
        rows = [{"text": f"{w} is the word number {i} here", "label": "first" if i % 2 else "second"}
                for i, w in enumerate(words * 4)]
    else:
        rows = [{"prompt": f"Which is right about {w}?", "chosen": "The plain answer.", "rejected": f"{w} {w}"}
                for w in words * 4]
    spec = _spec(steps=4, eval_every=2, precision="bf16")
    recipe = getattr(spec.finetune, kind)
    recipe.data = str(_jsonl(tmp_path / "train.jsonl", rows[:16]))
    recipe.val_data = str(_jsonl(tmp_path / "val.jsonl", rows[16:]))
    out = tmp_path / "out"
    out.mkdir()
    res = RECIPES[kind](spec, _model_dir(tiny_run), "tiny", None, out, tmp_path / "work", quiet())
    hist = json.loads((out / "history.json").read_text())
    assert res["steps"] == 4 and len(hist["val"]) == 2
    assert all(np.isfinite(v["loss"]) for v in hist["val"])

