"""The three recipes end to end: data, model (LoRA or full, freezing), the loop, saving, and base-vs-tuned
evaluation on held-out rows, then the risk suite on the new model (`finetune/risk.py`). Each writes into `out`:
`model/` (a Hugging Face directory, LoRA merged), `adapter/` (LoRA only, PEFT's format), `metrics.json`,
`risk.json`, `history.json` and `quarantine.jsonl`.

Training runs on fine-tuning's device (`pick_device` in `train/step.py`: CUDA when there is one); the rows stay on
the CPU and go to the model's device batch by batch, and the loop hands the model back on the CPU, where it is
saved and evaluated beside the base."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from lmwright.chat_template import encode_conversation, encode_prompt, pack
from lmwright.core.progress import Reporter
from lmwright.data.augment import Augment, augment_rows
from lmwright.data.document import doc_json, read_docs
from lmwright.data.split import split_path
from lmwright.errors import LmwrightError
from lmwright.finetune import formats, lora, pydocs_tasks, risk
from lmwright.finetune.fit import NEEDS, RecipeSkipped, classify_label
from lmwright.finetune.loop import train
from lmwright.finetune.objectives import (
    Classifier,
    class_weights,
    device_of,
    dpo_loss,
    sequence_logprob,
    sft_loss,
)
from lmwright.model.hf import load_hf, save_hf
from lmwright.spec import LoopSpec, TrainSpec
from lmwright.tokenizer import BOS, PAD, chat_stop_ids, load_tokenizer, special_ids
from lmwright.train.distributed import Dist


def train_spec(spec, recipe) -> TrainSpec:
    """The settings the fine-tuning loop reads, as a TrainSpec for pretraining's optimizer and schedule code:
    `finetune`'s training keys (those of `LoopSpec`, which `train` has too) over `train`'s (whose finer optimizer
    settings, betas and momentum, fine-tuning shares), with the recipe's steps and learning rate when it sets them."""
    ft = spec.finetune
    return spec.train.model_copy(update={**{k: getattr(ft, k) for k in LoopSpec.model_fields},
                                         "max_steps": recipe.steps or ft.steps, "lr": recipe.lr or ft.lr})


def _held_out(i: int) -> bool:  # a stable 10% of a file's rows when no validation file is given
    return hashlib.sha256(str(i).encode()).digest()[0] < 26


def load_rows(kind: str, recipe, split_dir: Path | None, seed: int, out: Path,
              make_default, sources: set[str] | None = None, made_from: str = "pydocs") -> tuple[list, list, dict]:
    """(train rows, held-out rows, accounting) from the recipe's files, or made by `make_default` from the train and
    validation splits' documents of `sources` (None: every source). Rows made from documents that are too few to
    train and judge on skip the recipe (`RecipeSkipped`); a file of the user's that is too small is an error."""
    if recipe.data:
        loaded = formats.load(Path(recipe.data), kind)
        quarantined = list(loaded.quarantined)
        if recipe.val_data:
            val = formats.load(Path(recipe.val_data), kind)
            quarantined += val.quarantined
            train_rows, val_rows = loaded.rows, val.rows
        else:
            train_rows = [r for i, r in enumerate(loaded.rows) if not _held_out(i)]
            val_rows = [r for i, r in enumerate(loaded.rows) if _held_out(i)]
        acct = {**loaded.summary(), "source": recipe.data}
    else:
        if split_dir is None:
            raise LmwrightError(f"finetune.{kind}.data is not set and there is no pydocs split to make data from")
        train_docs, val_docs = (
            [d for d in read_docs(split_path(split_dir, name, ".parquet"))
             if sources is None or d["source_name"] in sources] for name in ("train", "val"))
        train_rows, val_rows = make_default(train_docs, seed), make_default(val_docs, seed)
        quarantined = []
        acct = {"read": len(train_rows) + len(val_rows), "kept": len(train_rows) + len(val_rows), "quarantined": 0,
                "source": f"{made_from} (made from the train and validation splits)"}
        if not train_rows or not val_rows:
            raise RecipeSkipped(f"{len(train_rows)} training and {len(val_rows)} held-out rows made from "
                                f"{made_from}; it needs " + NEEDS[kind])
    with open(out / "quarantine.jsonl", "w", encoding="utf-8") as f:
        for q in quarantined:
            f.write(json.dumps(q) + "\n")
    if not train_rows or not val_rows:
        raise LmwrightError(f"finetune {kind}: {len(train_rows)} training and {len(val_rows)} held-out rows; "
                            "both need at least one (give more data or a val_data file)")
    return train_rows, val_rows, {**acct, "train": len(train_rows), "val": len(val_rows)}


def augmented(kind: str, rows: list, cfg, seed: int, acct: dict) -> list:
    """The training rows and `cfg.copies` noisy copies of each: a classification row's text, a preference row's
    prompt, an SFT conversation's user turns (paraphrased as instructions); answers and labels stay as they are.
    Called by each recipe once its rows are chosen (so the copies never count toward a label's minimum)."""
    if not cfg.copies:
        return rows
    out = _augment(kind, rows, cfg, seed)
    acct.update(train=len(out), augmented=len(out) - len(rows))
    return out


def _augment(kind: str, rows: list, cfg, seed: int) -> list:
    aug = Augment(cfg.copies, cfg.char_rate, cfg.word_dropout, cfg.word_swap, cfg.word_replace, cfg.paraphrase)
    if kind != "sft":
        return [{k: v for k, v in r.items() if k != "augmented"}
                for r in augment_rows(rows, aug, seed, ("text",) if kind == "classify" else ("prompt",))]
    out = list(rows)
    for i, msgs in enumerate(rows):
        for k in range(cfg.copies):
            rng = random.Random(f"{seed}:{i}:{k}")
            out.append([{**m, "content": aug.apply(m["content"], rng, instruction=True)} if m["role"] == "user"
                        else m for m in msgs])
    return out


def prepare(spec, base_dir: Path, reporter: Reporter):
    """The base model with LoRA adapters or frozen layers as the spec asks, and its tokenizer."""
    ft = spec.finetune
    torch.manual_seed(spec.project.seed)  # adapters and heads start the same in every run (and resume)
    model, tok = load_hf(base_dir), load_tokenizer(base_dir)
    if ft.method == "lora":
        model = lora.add_lora(model, ft.lora.r, ft.lora.alpha, ft.lora.dropout, ft.lora.target_modules)
    else:
        frozen = lora.freeze(model, ft.freeze_layers, ft.freeze_embeddings)
        if frozen:
            reporter.log(f"  finetune: {frozen:,} parameters frozen (embeddings: {ft.freeze_embeddings}, "
                         f"first {ft.freeze_layers} blocks)")
    return model, tok


def _finish_lm(model, spec, base_dir: Path, base_name: str, tok, out: Path) -> torch.nn.Module:
    """Save the adapter (LoRA), merge, and save the merged model as a Hugging Face directory."""
    if spec.finetune.method == "lora":
        lora.save_adapter(model, out / "adapter", base_name)
        model = lora.merge(model)
    save_hf(model.eval(), base_dir, out / "model", special_ids(tok))
    return model


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _interval(spec, metric, n: int) -> list[float]:
    """A bootstrap interval over the held-out examples, with the evaluation section's settings."""
    from lmwright.evaluate.stats import bootstrap_ci

    return list(bootstrap_ci(metric, n, spec.eval.bootstrap, spec.eval.confidence, spec.project.seed))


# -- SFT ---------------------------------------------------------------------------------------------------------

def _answers(model, tok, prompts: list[list[int]], max_new: int) -> list[str]:
    from lmwright.model.engine import Engine, SamplingParams

    engine = Engine(model, tok, max_batch=16, compile=False)
    reqs = engine.generate(prompts, SamplingParams(max_tokens=max_new, temperature=0,
                                                   stop_token_ids=chat_stop_ids(tok)))
    return [r.text.strip() for r in reqs]


def sft(spec, base_dir: Path, base_name: str, split_dir: Path | None, out: Path, work: Path,
        reporter: Reporter, d: Dist | None = None) -> dict:
    from lmwright.evaluate.generation import rouge

    ft, r = spec.finetune, spec.finetune.sft
    seq_len = r.seq_len or ft.seq_len

    def default(docs, _seed):
        return [formats.sft_messages(x)[1] for x in pydocs_tasks.instructions(docs)]

    train_rows, val_rows, acct = load_rows("sft", r, split_dir, spec.project.seed, out, default,
                                           spec.data.pydocs_sources())
    train_rows = augmented("sft", train_rows, r.augment, spec.project.seed, acct)
    model, tok = prepare(spec, base_dir, reporter)
    pad = tok.token_to_id(PAD) or 0
    t_ids, t_lab, _ = pack([encode_conversation(tok, m) for m in train_rows], seq_len, pad, r.packing)
    v_ids, v_lab, _ = pack([encode_conversation(tok, m) for m in val_rows], seq_len, pad, r.packing)
    v_ids, v_lab = v_ids[:64], v_lab[:64]

    def loss_fn(net, idx: np.ndarray) -> torch.Tensor:
        return sft_loss(net, torch.from_numpy(t_ids[idx]), torch.from_numpy(t_lab[idx]))

    def val_loss(m) -> float:
        dev = device_of(m)  # the model in training, or the base and the result on the CPU
        with torch.no_grad():
            return float(np.mean([m(torch.from_numpy(v_ids[i:i + 16, :-1]).to(dev),
                                    torch.from_numpy(v_lab[i:i + 16, 1:]).to(dev)).item()
                                  for i in range(0, len(v_ids), 16)]))

    base = load_hf(base_dir)
    base_val = val_loss(base)
    n_trainable = _trainable(model)
    reporter.log(f"  finetune sft: {acct['train']:,} conversations ({len(t_ids):,} rows of {seq_len}), "
                 f"{n_trainable:,} trainable parameters ({ft.method})")
    hist = train(model, train_spec(spec, r), len(t_ids), loss_fn, lambda: {"loss": val_loss(model)}, work,
                 reporter, spec.project.seed, "finetune sft", ft.early_stopping, d)
    if d is not None and not d.main:
        return {}  # the first process saves and evaluates
    model = _finish_lm(model, spec, base_dir, base_name, tok, out)
    # base against fine-tuned on held-out single-turn instructions
    single = [m for m in val_rows if [x["role"] for x in m][-2:] == ["user", "assistant"]]
    probe = single[:: max(1, len(single) // max(1, r.eval_examples))][: r.eval_examples]  # spread over the set
    result = {"task": "sft", "data": acct, "method": ft.method, "trainable_params": n_trainable,
              "seconds": round(hist["seconds"], 1), "steps": hist["step"][-1] if hist["step"] else 0,
              "base": {"val_loss": base_val}, "tuned": {"val_loss": val_loss(model)}, "examples": []}
    if probe:
        prompts = [encode_prompt(tok, m[:-1]) for m in probe]
        refs = [m[-1]["content"] for m in probe]
        result["ci"] = {}
        for key, mdl in (("base", base), ("tuned", model)):
            preds = _answers(mdl, tok, prompts, r.max_new_tokens)
            per_example = rouge(preds, refs)["rougeL"]
            result[key]["rouge_l"] = float(per_example.mean())
            result[key]["answers"] = preds[:8]
            result["ci"][key] = {"rouge_l": _interval(spec, lambda i, x=per_example: float(x[i].mean()), len(refs))}
        result["examples"] = [{"instruction": m[-2]["content"], "reference": ref, "base": b, "tuned": t}
                              for m, ref, b, t in zip(probe[:8], refs[:8], result["base"].pop("answers"),
                                                      result["tuned"].pop("answers"), strict=False)]
        result["eval_examples"] = len(probe)
    result["risk"] = risk.chat_model(spec, model, tok, [m[:-1] for m in single], [m[-1]["content"] for m in single],
                                     split_dir, out)
    (out / "history.json").write_text(json.dumps(hist))
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


# -- classification ------------------------------------------------------------------------------------------------

def classify_rows(spec, split_dir: Path | None, out: Path) -> tuple[list[dict], list[dict], list[str], dict]:
    """The classifier's (train rows, held-out rows, labels, accounting): from `finetune.classify.data`, or from the
    documents' label (`finetune/fit.py` chooses it), keeping the labels with enough training examples. Too few
    rows made from documents skip the recipe (`RecipeSkipped`). `lmwright ensemble` reads the same rows."""
    r = spec.finetune.classify
    found = classify_label(spec) if not r.data else None
    if not r.data and not (found and found[1]):
        raise RecipeSkipped("no labels; it needs " + NEEDS["classify"])
    label, label_sources = found or ("", [])
    pydocs = label == "chapter" and set(label_sources) <= spec.data.pydocs_sources()
    make = ((lambda docs, _s: pydocs_tasks.classification(docs)) if pydocs
            else (lambda docs, _s: labelled(docs, label)))
    train_rows, val_rows, acct = load_rows("classify", r, split_dir, spec.project.seed, out, make,
                                           None if r.data else set(label_sources),
                                           f"the documents' {label!r} label")
    least = r.min_examples or (80 if pydocs else 10)
    counts = Counter(x["label"] for x in train_rows)
    labels = r.labels or (pydocs_tasks.frequent_labels(train_rows, least) if not r.data else sorted(counts))
    train_rows = [x for x in train_rows if x["label"] in labels]
    val_rows = [x for x in val_rows if x["label"] in labels]
    acct.update(labels=len(labels), train=len(train_rows), val=len(val_rows))
    if not r.data and (len(labels) < 2 or not val_rows):
        shown = ", ".join(f"{k} {v}" for k, v in counts.most_common(8)) or "none"
        raise RecipeSkipped(f"{len(labels)} value(s) of the label {label!r} have at least {least} training "
                            f"examples and {len(val_rows)} held-out rows carry them (training counts: {shown}); it "
                            "needs two or more: lower finetune.classify.min_examples, or label more documents "
                            "(label_fields are read from JSONL, CSV and Parquet records)")
    return train_rows, val_rows, labels, acct


def labelled(docs: list[dict], label: str, max_chars: int = 400) -> list[dict]:
    """Classification rows from the documents that carry `label` (their opening `max_chars` characters)."""
    rows = []
    for d in docs:
        value = doc_json(d, "labels").get(label)
        if value is not None and str(value).strip():
            rows.append({"text": d["text"][:max_chars], "label": str(value), "source": d["locator"]})
    return rows


def _encode_texts(tok, texts: list[str], seq_len: int, pad: int) -> np.ndarray:
    bos = tok.token_to_id(BOS)
    rows = np.full((len(texts), seq_len), pad, dtype=np.int64)
    for i, t in enumerate(texts):
        ids = ([bos] if bos is not None else []) + tok.encode(t, add_special_tokens=False).ids
        ids = ids[:seq_len]
        rows[i, : len(ids)] = ids
    return rows


def classify(spec, base_dir: Path, base_name: str, split_dir: Path | None, out: Path, work: Path,
             reporter: Reporter, d: Dist | None = None) -> dict:
    from lmwright.evaluate.classify import (
        classification_metrics,
        classify_by_likelihood,
        confusion,
        confusion_png,
        scores_from_confusion,
    )

    ft, r = spec.finetune, spec.finetune.classify
    seq_len = min(r.seq_len or ft.seq_len, 128)
    train_rows, val_rows, labels, acct = classify_rows(spec, split_dir, out)
    train_rows = augmented("classify", train_rows, r.augment, spec.project.seed, acct)
    lm, tok = prepare(spec, base_dir, reporter)
    pad = tok.token_to_id(PAD) or 0
    model = Classifier(lm, labels, pad)
    if not lm.cfg.tie_embeddings:  # the output head is not used by a classifier: not a parameter to train
        lm.lm_head.requires_grad_(False)
    t_x = torch.from_numpy(_encode_texts(tok, [x["text"] for x in train_rows], seq_len, pad))
    t_y = torch.tensor([labels.index(x["label"]) for x in train_rows])
    v_x = torch.from_numpy(_encode_texts(tok, [x["text"] for x in val_rows], seq_len, pad))
    v_y = np.array([labels.index(x["label"]) for x in val_rows])
    weights = class_weights(t_y.tolist(), len(labels), r.class_weights)

    def loss_fn(net, idx: np.ndarray) -> torch.Tensor:
        logits = net(t_x[idx])  # the classifier moves its input to its device
        return torch.nn.functional.cross_entropy(logits, t_y[idx].to(logits.device),
                                                 weight=None if weights is None else weights.to(logits.device))

    def predict() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            # float: under bf16 autocast (validation in the loop) the logits are bf16, which numpy cannot hold
            logits = torch.cat([model(v_x[i:i + 32]) for i in range(0, len(v_x), 32)]).float().cpu()
        return logits.argmax(1).numpy(), torch.softmax(logits, 1).numpy()

    def val_fn() -> dict:
        pred, _ = predict()
        m = classification_metrics(v_y, pred, labels)
        return {"loss": 1 - m["f1_macro"], "accuracy": m["accuracy"], "f1_macro": m["f1_macro"]}

    reporter.log(f"  finetune classify: {len(train_rows):,} examples, {len(labels)} classes, "
                 f"{_trainable(model):,} trainable parameters ({ft.method} + head)")
    hist = train(model, train_spec(spec, r), len(train_rows), loss_fn, val_fn, work, reporter, spec.project.seed,
                 "finetune classify", ft.early_stopping, d)
    if d is not None and not d.main:
        return {}
    if ft.method == "lora":
        lora.save_adapter(model.lm, out / "adapter", base_name, {"score.weight": model.score.weight})
        model.lm = lora.merge(model.lm)
    model.eval()
    pred, proba = predict()
    tuned = classification_metrics(v_y, pred, labels, proba)
    b_pred, b_proba = classify_by_likelihood(load_hf(base_dir), tok, [x["text"][:300] for x in val_rows], labels)
    base = classification_metrics(v_y, b_pred, labels, b_proba)
    model.save_hf(base_dir, out / "model")
    confusion_png(tuned["confusion"], labels, out / "confusion.png", title="fine-tuned classifier")
    keep = ("accuracy", "f1_macro", "f1_weighted", "roc_auc")
    result = {"task": "classify", "data": acct, "labels": labels, "method": ft.method,
              "seconds": round(hist["seconds"], 1), "steps": hist["step"][-1] if hist["step"] else 0,
              "class_weights": r.class_weights,
              "base": {"how": "zero-shot: each label's likelihood as the text's continuation",
                       **{k: base[k] for k in keep if k in base}},
              "tuned": {"how": "classification head", **{k: tuned[k] for k in keep if k in tuned}},
              "confusion": tuned["confusion"], "per_class": tuned.get("per_class"),
              "ci": {key: {m: _interval(spec, lambda i, p=p, m=m: scores_from_confusion(
                  confusion(v_y[i], p[i], len(labels)))[m], len(v_y)) for m in ("accuracy", "f1_macro")}
                  for key, p in (("base", b_pred), ("tuned", pred))}}

    def predict_texts(texts: list[str]) -> np.ndarray:
        x = torch.from_numpy(_encode_texts(tok, texts, seq_len, pad))
        x = x[:, : max(1, int((x != pad).sum(1).max()))]  # right padding past the longest text changes nothing
        with torch.no_grad():
            return torch.cat([model(x[i:i + 32]) for i in range(0, len(x), 32)]).argmax(1).cpu().numpy()

    (out / "predictions.json").write_text(json.dumps({"labels": labels, "true": v_y.tolist(), "pred": pred.tolist()}))
    result["risk"] = risk.classifier(spec, predict_texts, [x["text"] for x in val_rows], v_y, len(labels), out)
    (out / "history.json").write_text(json.dumps(hist))
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    return result


# -- preference (DPO) -----------------------------------------------------------------------------------------------

def preference(spec, base_dir: Path, base_name: str, split_dir: Path | None, out: Path, work: Path,
               reporter: Reporter, d: Dist | None = None) -> dict:
    ft, r = spec.finetune, spec.finetune.preference
    seq_len = r.seq_len or ft.seq_len
    train_rows, val_rows, acct = load_rows("preference", r, split_dir, spec.project.seed, out,
                                           pydocs_tasks.preferences, spec.data.pydocs_sources())
    train_rows = augmented("preference", train_rows, r.augment, spec.project.seed, acct)
    model, tok = prepare(spec, base_dir, reporter)
    pad = tok.token_to_id(PAD) or 0

    def encode(rows: list[dict]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Chosen and rejected rows at one width, so a batch can hold both."""
        ex = [encode_conversation(tok, [{"role": "user", "content": x["prompt"]},
                                        {"role": "assistant", "content": x[which]}])
              for which in ("chosen", "rejected") for x in rows]
        ids, lab, _ = pack(ex, seq_len, pad, packing=False)
        ids, lab, n = torch.from_numpy(ids), torch.from_numpy(lab), len(rows)
        return {"chosen": (ids[:n], lab[:n]), "rejected": (ids[n:], lab[n:])}

    data = {"train": encode(train_rows), "val": encode(val_rows)}
    # the reference model is the base: its log-probabilities once, up front (no second model in memory)
    base = load_hf(base_dir)
    with torch.no_grad():
        ref = {s: {w: torch.cat([sequence_logprob(base, i[k:k + 32], lab[k:k + 32]) for k in range(0, len(i), 32)])
                   for w, (i, lab) in rows.items()} for s, rows in data.items()}

    def margins(net, split: str, idx=None) -> tuple[torch.Tensor, ...]:
        (ci, cl), (ri, rl) = data[split]["chosen"], data[split]["rejected"]
        sel = slice(None) if idx is None else torch.from_numpy(idx)
        # chosen and rejected in one forward: DDP wants one forward per backward
        pair = sequence_logprob(net, torch.cat([ci[sel], ri[sel]]), torch.cat([cl[sel], rl[sel]]))
        n = len(pair) // 2  # the reference's log-probabilities were taken on the CPU: to the policy's device
        return pair[:n], pair[n:], ref[split]["chosen"][sel].to(pair.device), ref[split]["rejected"][sel].to(pair.device)

    def loss_fn(net, idx: np.ndarray) -> torch.Tensor:
        return dpo_loss(*margins(net, "train", idx), r.beta)[0]

    def val_fn() -> dict:
        loss, wins = dpo_loss(*margins(model, "val"), r.beta)
        return {"loss": float(loss), "preference_accuracy": float(wins.mean())}

    def likelihood_accuracy(m) -> float:  # how often the chosen answer is more likely than the rejected one
        (ci, cl), (ri, rl) = data["val"]["chosen"], data["val"]["rejected"]
        with torch.no_grad():
            return float((sequence_logprob(m, ci, cl) > sequence_logprob(m, ri, rl)).float().mean())

    base_acc = likelihood_accuracy(base)
    reporter.log(f"  finetune preference: {len(train_rows):,} pairs, beta {r.beta}, {_trainable(model):,} "
                 f"trainable parameters ({ft.method})")
    model.eval()
    with torch.no_grad():
        start = val_fn()
    model.train()
    hist = train(model, train_spec(spec, r), len(train_rows), loss_fn, val_fn, work, reporter, spec.project.seed,
                 "finetune preference", ft.early_stopping, d)
    if d is not None and not d.main:
        return {}
    with torch.no_grad():
        end = val_fn()
    model = _finish_lm(model, spec, base_dir, base_name, tok, out)
    result = {"task": "preference", "data": acct, "method": ft.method, "beta": r.beta,
              "seconds": round(hist["seconds"], 1), "steps": hist["step"][-1] if hist["step"] else 0,
              "base": {"dpo_loss": start["loss"], "preference_accuracy": start["preference_accuracy"],
                       "likelihood_accuracy": base_acc},
              "tuned": {"dpo_loss": end["loss"], "preference_accuracy": end["preference_accuracy"],
                        "likelihood_accuracy": likelihood_accuracy(model)}}
    result["risk"] = risk.chat_model(spec, model, tok, [[{"role": "user", "content": x["prompt"]}] for x in val_rows],
                                     [x["chosen"] for x in val_rows], split_dir, out)
    (out / "history.json").write_text(json.dumps(hist))
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


RECIPES = {"sft": sft, "classify": classify, "preference": preference}
