"""`lmwright retrain`: continuous learning. Gathers what is new into a dataset version, continues from the
champion, judges the challenger on the frozen test set and on the new data, and promotes it only through the
registry's gate. Each retraining is a `retrain` stage run in the store, with its trigger ("manual", a drift alert,
or N new corrections), its data accounting, both comparisons and what happened to the challenger.

- `finetune` (the default): the corrections users sent through /v1/feedback, joined to the prompts they correct
  (the request log keeps prompt text only with `serve.log_prompts`; without it a correction cannot become a training
  pair, and the accounting says so), become conversations; a stable `holdout` share of them (by request id) is kept
  out to judge the challenger; the rest, with `replay` old training rows per new row, fine-tune the assistant's
  champion (the sft stage, `finetune.base` = the champion).
- `pretrain`: continued pretraining of the base model's champion (`train.init_from`) on the sources as they are
  now (new snapshots flow in through the data stages), judged on the test split.

Accepted annotations join the new data once the annotation tool (issue 19) records them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lmwright.core import registry
from lmwright.core.progress import Reporter
from lmwright.core.schema import Model, StageRun
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.ops import registry as gates
from lmwright.ops.monitor import training_rows

DRIFT_METRICS = ("drift", "drift_auc", "drift_share")
_TURN = re.compile(r"^(system|developer|user|assistant|tool): ", re.M)

RunStages = Callable[[Workspace, str], dict]  # (workspace, until) -> the stage outcomes (cli/common.run_stages)


def with_overrides(ws: Workspace, overrides: list[str]) -> Workspace:
    """The same workspace with `--set`-style overrides on top of its spec."""
    from lmwright.spec import Spec, apply_override

    raw = ws.spec.model_dump(mode="json", by_alias=True)
    for o in overrides:
        apply_override(raw, o)
    return Workspace(root=ws.root, spec=Spec.model_validate(raw), spec_path=ws.spec_path)


# -- what is new ------------------------------------------------------------------------------------------------

def logged_conversation(prompt: str) -> list[dict] | None:
    """The conversation a chat request's log row holds (its messages as JSON, as serve/routes.py writes them);
    None for a row that is not one (a content cannot fake a turn: each is a JSON string)."""
    try:
        turns = json.loads(prompt)
    except ValueError:
        return None
    ok = isinstance(turns, list) and all(isinstance(t, dict) and isinstance(t.get("role"), str)
                                         and isinstance(t.get("content"), str) for t in turns)
    return [{"role": t["role"], "content": t["content"]} for t in turns] if ok and turns else None


def _held_out(request_id: str, share: float) -> bool:
    return int(hashlib.sha256(request_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def learned_upto(store: Store) -> int:
    """The last feedback row the champion has learned from: the newest one the last promoted retraining read (0:
    none). Corrections after it are new; a retraining that was not promoted leaves its rows new for the next."""
    promoted = [r for r in store.runs(limit=500) if r.stage == "retrain" and r.status == "done"
                and (r.summary or {}).get("promoted")]
    return max((r.summary.get("data", {}).get("feedback_upto", 0) for r in promoted), default=0)


def corrections(store: Store, holdout: float, trusted: list[str] | None = None,
                after: int = 0) -> tuple[list[list[dict]], list[list[dict]], dict[str, Any]]:
    """(training conversations, held-out conversations, accounting) from the corrections sent after feedback row
    `after`: each is read, kept, or removed with a reason (kept + removed = read); `feedback_upto` is the newest
    row read."""
    from datetime import datetime, timezone

    from lmwright.data.denylist import Denylist

    train, held, removed = [], [], {}
    seen = set()
    denylist = Denylist.of(store)
    pairs = store.feedback_between(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc))
    read, upto = 0, after
    for f, r in pairs:
        if f.id <= after or not (f.correction or "").strip():
            continue
        read, upto = read + 1, max(upto, f.id)
        why, convo = None, None
        if trusted is not None and f.key_name not in trusted:
            why = "from a key not in lifecycle.retrain.trusted_keys"
        elif r is None:
            why = "no request-log row for its response id"
        elif not r.prompt:
            why = "its prompt was not kept (serve.log_prompts is off)"
        elif r.endpoint != "chat.completions":
            why = "a plain completion (the finetune method learns conversations)"
        else:
            convo = logged_conversation(r.prompt)
            if not convo or convo[-1]["role"] != "user":
                why = "its logged prompt is not a conversation ending with a user turn"
            elif denylist.denies_text(f.correction) or any(denylist.denies_text(m["content"]) for m in convo):
                why = "taken down (lmwright forget)"
            else:
                key = json.dumps([convo, f.correction])
                if key in seen:
                    why = "a duplicate of an earlier correction"
                seen.add(key)
        if why:
            removed[why] = removed.get(why, 0) + 1
            continue
        row = [*convo, {"role": "assistant", "content": f.correction.strip()}]
        (held if _held_out(f.request_id, holdout) else train).append(row)
    return train, held, {"read": read, "kept": len(train) + len(held), "train": len(train), "held_out": len(held),
                         "removed": removed, "feedback_upto": upto}


def _write_rows(path: Path, rows: list[list[dict]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"messages": r}, ensure_ascii=False) + "\n")


# -- judging on the new data ---------------------------------------------------------------------------------------

def answer_nats(model_dir: Path, rows: list[list[dict]]) -> np.ndarray:
    """Per conversation: [nats of its answers under the model, their bytes] (every assistant turn is scored)."""
    import torch

    from lmwright.chat_template import encode_conversation
    from lmwright.model.hf import load_hf
    from lmwright.tokenizer import load_tokenizer

    model, tok = load_hf(model_dir).eval(), load_tokenizer(model_dir)
    out = []
    with torch.no_grad():
        for r in rows:
            ids, labels = encode_conversation(tok, r)
            ids, labels = ids[-model.cfg.max_seq_len - 1:], labels[-model.cfg.max_seq_len - 1:]
            x, y = torch.tensor(ids[:-1])[None], torch.tensor(labels[1:])[None]
            logits = model(x).float()
            nll = torch.nn.functional.cross_entropy(logits[0], y[0], ignore_index=-100, reduction="sum")
            answered = sum(len(t["content"].encode("utf-8")) for t in r if t["role"] == "assistant")
            out.append([float(nll), answered or 1])
    return np.array(out, dtype=float)


def compare_on_new(ws: Workspace, challenger_dir: Path, champion_dir: Path, rows: list[list[dict]]) -> dict:
    """Bits per byte of the held-out new answers, challenger minus champion, with a paired bootstrap interval."""
    need = ws.spec.lifecycle.retrain.min_held_out
    if len(rows) < need:
        return {"rows": len(rows), "why": f"{len(rows)} held-out new row(s), fewer than lifecycle.retrain."
                                          f"min_held_out ({need}): too few to judge the challenger on"}
    p = gates.paired_bpb(answer_nats(challenger_dir, rows), answer_nats(champion_dir, rows), ws.spec.registry.gate,
                         ws.spec.project.seed)
    return {"rows": len(rows), **p, "better": p["ci"][1] < 0}


# -- triggers ------------------------------------------------------------------------------------------------------

def _last_retrain(store: Store) -> StageRun | None:
    return store.last_run("retrain", status=None)


def due(ws: Workspace, moves: list[dict]) -> str | None:
    """The trigger for a retraining the lifecycle section asks for now, if any: a drift alert that just fired
    (`lifecycle.retrain.on_drift`), or `feedback_rows` corrections since the last retraining started."""
    cfg = ws.spec.lifecycle.retrain
    metric = {r.name: r.metric for r in ws.spec.monitor.alerts}
    if cfg.on_drift:
        for m in moves:
            if m["to"] == "firing" and metric.get(m["rule"]) in DRIFT_METRICS:
                return f"drift alert {m['rule']} on {m['model']}@{m['version']}"
    if cfg.feedback_rows:
        from datetime import datetime, timezone

        store = Store(ws.store_url)
        last = _last_retrain(store)
        since = registry.as_utc(last.started_at) if last else datetime(1970, 1, 1, tzinfo=timezone.utc)
        n = sum(bool(f.correction) for f, _ in store.feedback_between(since, datetime.now(timezone.utc)))
        if n >= cfg.feedback_rows:
            return f"{n} new corrections (lifecycle.retrain.feedback_rows: {cfg.feedback_rows})"
    return None


def start_in_background(ws: Workspace, trigger: str) -> subprocess.Popen | None:
    """`lmwright retrain --trigger ...` in a process of its own (the server keeps serving), unless one runs."""
    if _lock_holder(ws) is not None:
        return None
    log = ws.root / ".lmwright" / "logs" / f"retrain-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lmwright", "retrain", "--dir", str(ws.root), "--trigger", trigger]
    with open(log, "w") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _lock(ws: Workspace) -> Path:
    return ws.root / ".lmwright" / "retrain.lock"


def _lock_holder(ws: Workspace) -> int | None:
    """The process holding the retraining lock, if it is alive (a lock left by a killed one is stale)."""
    try:
        pid = int(_lock(ws).read_text())
        os.kill(pid, 0)
        return pid
    except PermissionError:  # alive, another user's
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def _take_lock(ws: Workspace) -> None:
    """Atomically: of two retrainings starting at once, one gets the lock and the other an error."""
    path = _lock(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            holder = _lock_holder(ws)
            if holder is not None:
                raise LmwrightError(f"a retraining is already running (process {holder}); wait for it to finish")\
                    from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return
    raise LmwrightError(f"could not take the retraining lock {path}; remove it if no retraining is running")


# -- the retraining ------------------------------------------------------------------------------------------------

def _champion(store: Store, name: str) -> Model:
    a = registry.alias_of(store, name, "champion")
    if a is None:
        raise LmwrightError(f"{name} has no champion to continue from; promote one first "
                            f"(`lmwright promote {name}@VERSION --to champion`)")
    return registry.version(store, f"{name}@{a.version}")


def retrain(ws: Workspace, trigger: str, run_stages: RunStages, reporter: Reporter | None = None,
            promote: bool | None = None) -> dict:
    """One retraining, recorded as a `retrain` stage run; returns its summary."""
    reporter = reporter or Reporter(quiet=True)
    _take_lock(ws)
    store = Store(ws.store_url)
    run = store.start_run("retrain", hashlib.sha256(f"{time.time()}".encode()).hexdigest(),
                          {"trigger": trigger, "lifecycle": ws.spec.lifecycle.model_dump(mode="json")}, "retrain")
    t0 = time.time()
    try:
        cfg = ws.spec.lifecycle.retrain
        summary = (_finetune if cfg.method == "finetune" else _pretrain)(ws, run, trigger, run_stages, reporter)
        summary.update(_decide(ws, summary, cfg.promote if promote is None else promote, trigger))
    except BaseException as exc:
        store.fail_run(run, f"{type(exc).__name__}: {exc}", time.time() - t0)
        raise
    finally:
        _lock(ws).unlink(missing_ok=True)
    inputs = {k: v for k, v in (("champion", summary.get("champion_digest")),
                                ("data", summary.get("data_digest"))) if v}
    datasets = [(f"{ws.spec.project.name}-retrain", summary["data_dir"], summary["data"]["rows"])] \
        if summary.get("data_dir") else []
    store.finish_run(run, summary.get("data_digest") or summary.get("challenger_digest", ""), summary, inputs,
                     datasets, None, time.time() - t0)
    store.audit("retrain", trigger=trigger, challenger=summary.get("challenger"), promoted=summary.get("promoted"))
    return summary


def _finetune(ws: Workspace, run: StageRun, trigger: str, run_stages: RunStages, reporter: Reporter) -> dict:
    from lmwright.core.artifacts import file_digest
    from lmwright.core.models import resolve_model

    cfg, store = ws.spec.lifecycle.retrain, Store(ws.store_url)
    name = f"{ws.spec.project.name}-assistant"
    champ = _champion(store, name)
    new_train, held, acct = corrections(store, cfg.holdout, cfg.trusted_keys, learned_upto(store))
    if not new_train:
        why = "; ".join(f"{n}: {reason}" for reason, n in acct["removed"].items()) or "none sent since the last " \
            "promoted retraining"
        raise LmwrightError(f"nothing new to learn from: {acct['read']} new correction(s), none usable for training "
                            f"({why}); corrections come from POST /v1/feedback {{id, correction}} on chat answers, "
                            "with prompts kept (serve.log_prompts: true)")
    _, old, _ = training_rows(ws, champ)
    rng = random.Random(ws.spec.project.seed)
    replay = rng.sample(old, min(len(old), round(cfg.replay * len(new_train))))
    out = ws.out_dir / "retrain" / f"{run.id:04d}"
    out.mkdir(parents=True, exist_ok=True)
    train_rows = new_train + replay
    rng.shuffle(train_rows)
    val_rows = held + rng.sample(old, min(len(old), max(len(held), 8)))
    _write_rows(out / "train.jsonl", train_rows)
    _write_rows(out / "val.jsonl", val_rows)
    _write_rows(out / "new-held-out.jsonl", held)
    _write_rows(out / "all.jsonl", old + new_train)  # what the challenger knows: the next replay and drift reference
    digest = hashlib.sha256(b"".join(file_digest(out / f).encode() for f in ("train.jsonl", "val.jsonl"))).hexdigest()
    reporter.log(f"  retrain: {acct['train']} new conversations + {len(replay)} replayed, {len(held)} held out "
                 f"({trigger}); from {name}@{champ.version}")
    tuned = with_overrides(ws, [f"finetune.base={name}@{champ.version}", "finetune.sft.enabled=true",
                                f"finetune.sft.data={out / 'train.jsonl'}", f"finetune.sft.val_data={out / 'val.jsonl'}",
                                f"finetune.sft.steps={cfg.steps}"]
                           + ([f"finetune.sft.lr={cfg.lr}"] if cfg.lr else []))
    outcomes = run_stages(tuned, "sft")
    sft = outcomes["sft"]
    challenger = registry.version_of_digest(store, name, sft.digest)
    if challenger is None or challenger.id == champ.id:
        raise LmwrightError(f"fine-tuning from {name}@{champ.version} registered no new version (sft: {sft.status})")
    champ_dir = resolve_model(ws, f"{name}@{champ.version}")[0]
    new = compare_on_new(ws, sft.path / "model", champ_dir, held)
    _test(ws, challenger, sft.path / "model", outcomes["split"], reporter)
    return {"trigger": trigger, "method": "finetune", "champion": f"{name}@{champ.version}",
            "champion_digest": champ.digest, "challenger": f"{name}@{challenger.version}",
            "challenger_digest": challenger.digest, "data": {**acct, "replayed": len(replay), "rows": len(train_rows)},
            "data_dir": str(out.relative_to(ws.root)) if out.is_relative_to(ws.root) else str(out),
            "data_digest": digest, "train_rows": str(out / "train.jsonl"), "new_data": new,
            "sft_run": sft.summary.get("headline")}


def _test(ws: Workspace, m: Model, model_dir: Path, split, reporter: Reporter) -> None:
    """The challenger on the frozen test split (once; the gate pairs it with the champion's documents)."""
    from lmwright.evaluate.testset import final_evaluation

    if not gates._per_document(Store(ws.store_url), m.digest):
        final_evaluation(ws, model_dir, m.digest, f"{m.name}@{m.version}", split.path, split.digest, "retrain",
                         reporter)


def _pretrain(ws: Workspace, run: StageRun, trigger: str, run_stages: RunStages, reporter: Reporter) -> dict:
    cfg, store = ws.spec.lifecycle.retrain, Store(ws.store_url)
    name = ws.spec.project.name
    champ = _champion(store, name)
    tuned = with_overrides(ws, [f"train.init_from={name}@{champ.version}", f"train.max_steps={cfg.steps}"]
                           + ([f"train.lr={cfg.lr}"] if cfg.lr else []))
    outcomes = run_stages(tuned, "test")
    challenger = registry.version_of_digest(store, name, outcomes["save"].digest)
    if challenger is None or challenger.id == champ.id:
        raise LmwrightError(f"continued pretraining from {name}@{champ.version} made no new version")
    return {"trigger": trigger, "method": "pretrain", "champion": f"{name}@{champ.version}",
            "champion_digest": champ.digest, "challenger": f"{name}@{challenger.version}",
            "challenger_digest": challenger.digest, "data_digest": outcomes["split"].digest,
            "data": {"rows": outcomes["split"].summary.get("train", 0)},
            "new_data": {"why": "continued pretraining is judged on the test split of the sources as they are now"}}


def _decide(ws: Workspace, summary: dict, promote: bool, trigger: str) -> dict:
    """Promote the challenger through the gate when the lifecycle section says so and the new data agrees."""
    cfg = ws.spec.lifecycle.retrain
    ref = summary["challenger"]
    if not promote:
        return {"promoted": False, "why": "lifecycle.retrain.promote is off (or --no-promote)"}
    new = summary.get("new_data", {})
    if cfg.require_improvement and summary["method"] == "finetune" and not new.get("better"):
        return {"promoted": False,
                "why": (f"not better on the {new['rows']} held-out new rows (difference {new['difference']:+.4f} "
                        f"bits/byte, {100 * new['confidence']:.0f}% interval [{new['ci'][0]:+.4f}, {new['ci'][1]:+.4f}])"
                        if "ci" in new else new.get("why", "no held-out new rows"))}
    try:
        res = gates.promote(ws, ref, "champion", reason=f"retrain ({trigger})")
    except LmwrightError as exc:
        return {"promoted": False, "why": str(exc)}
    return {"promoted": bool(res.get("moved")), "gate": res.get("gate"), "why": res["said"]}
