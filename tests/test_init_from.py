"""Continued pretraining (`train.init_from`): from a registered model and from a Hugging Face Llama directory,
the tokenizer it brings, the caches that follow the model it names, resume over init, and the errors."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

import lmwright
from lmwright.chat_template import CHAT_TOKENS
from lmwright.core.models import resolve_model
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.data.batches import random_batch
from lmwright.data.split import split_path
from lmwright.errors import LmwrightError
from lmwright.model.fused_ce import lm_loss
from lmwright.model.hf import load_hf
from lmwright.tokenizer import PAD, TOKENIZER_FILES, load_tokenizer
from tests.conftest import quiet

SHORT = ["train.max_steps=4", "train.eval_every=4", "train.checkpoint_every=4"]


def _history(outcome) -> dict:
    return json.loads((outcome.path / "history.json").read_text())


def _first_batch(root: Path, outcomes, overrides: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch the run's first step trains on (before its first update)."""
    spec = Workspace.open(root, overrides).spec
    train = np.load(split_path(outcomes["tokenize"].path, "train", ".npy"), mmap_mode="r")
    return random_batch(train, spec.train.batch_size, spec.train.seq_len, spec.project.seed, 0)


def test_init_from_a_registered_model_starts_from_its_weights_and_tokenizer(tiny_run, tiny_copy):
    _, scratch = tiny_run
    over = [*SHORT, "train.init_from=tiny@champion", "model.d_model=48", "tokenizer.vocab_size=500"]
    buf = io.StringIO()
    outs = lmwright.run(tiny_copy, over, until="pretrain", reporter=Reporter(Console(file=buf, width=400)))
    init_dir, _, digest = resolve_model(Workspace.open(tiny_copy), "tiny@champion")
    # the tokenizer is the init model's own, byte for byte: the token shards are the same, so they stay cached
    assert outs["tokenizer"].digest == scratch["tokenizer"].digest and outs["tokenize"].status == "cached"
    assert outs["tokenizer"].summary["init_from"]["digest"] == digest
    s = outs["pretrain"].summary
    assert s["init_from"] == {"ref": "tiny@champion", "model": "tiny", "digest": digest}
    # the shape is the init model's; the disagreeing model and tokenizer sections are logged, once
    log = buf.getvalue()
    assert log.count("the architecture is train.init_from's") == 1
    assert "d_model 48 -> 32" in log and "vocab_size 500 -> 400" in log
    assert load_file(str(outs["pretrain"].path / "model.safetensors"))["model.embed_tokens.weight"].shape[1] == 32
    # the first step's loss is the init model's on that batch (its weights, before the first update), far below
    # the first loss of the run from scratch
    x, y = _first_batch(tiny_copy, outs, over)
    with torch.no_grad():
        init_loss = load_hf(init_dir)(x, y).item()
    first = _history(outs["pretrain"])["loss"][0]
    assert first == pytest.approx(init_loss, abs=1e-5)
    assert first < _history(scratch["pretrain"])["loss"][0] - 1.0


def test_a_checkpoint_wins_over_the_init_model(tiny_copy, tmp_path):
    from lmwright.train.loop import pretrain

    over = ["train.max_steps=4", "train.checkpoint_every=2", "train.eval_every=4", "train.init_from=tiny"]
    ws = Workspace.open(tiny_copy, over)
    outs = lmwright.run(tiny_copy, over, until="tokenize", reporter=quiet())
    tok, shards = load_tokenizer(outs["tokenizer"].path), outs["tokenize"].path
    init_dir = resolve_model(ws, "tiny")[0]
    first = pretrain(ws.spec, shards, tok, tmp_path, quiet(), init=init_dir)
    # again over the same work directory, as a killed run would be: it resumes from the step-2 checkpoint, not
    # from the init weights, and ends where the first run did
    again = pretrain(ws.spec, shards, tok, tmp_path, quiet(), init=init_dir)
    assert again.resumed_from == 2 and again.history["loss"][:2] == first.history["loss"][:2]
    a, b = first.model.weights(), again.model.weights()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _hf_llama(dest: Path, vocab: int, seed: int) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(dest)
    return model


def test_init_from_a_hugging_face_llama_directory(tiny_copy, tmp_path):
    published = tiny_copy / "lmwright-out" / "model"  # a project model's tokenizer, with lmwright's tokens
    hf_dir = tmp_path / "hf-llama"
    vocab = load_tokenizer(published).get_vocab_size()
    hf = _hf_llama(hf_dir, vocab + 8, seed=0)  # an embedding padded past the tokenizer, as many models have
    for name in TOKENIZER_FILES:
        shutil.copyfile(published / name, hf_dir / name)
    over = [*SHORT, f"train.init_from={hf_dir}"]
    outs = lmwright.run(tiny_copy, over, until="pretrain", reporter=quiet())
    s = outs["pretrain"].summary
    assert s["init_from"]["model"] == "hf-llama" and s["n_params"] == sum(p.numel() for p in hf.parameters())
    x, y = _first_batch(tiny_copy, outs, over)
    with torch.no_grad():
        hf_loss = lm_loss(hf(x).logits, y).item()
    assert _history(outs["pretrain"])["loss"][0] == pytest.approx(hf_loss, abs=1e-4)
    # the same model: cached; other weights in the same directory: the stages that read it run again
    again = lmwright.run(tiny_copy, over, until="pretrain", reporter=quiet())
    assert again["pretrain"].status == "cached"
    _hf_llama(hf_dir, vocab + 8, seed=1)
    changed = lmwright.run(tiny_copy, over, until="pretrain", reporter=quiet())
    assert changed["tokenizer"].status == "done" and changed["pretrain"].status == "done"
    assert changed["pretrain"].summary["init_from"]["digest"] != s["init_from"]["digest"]


def test_init_from_a_tokenizer_without_lmwright_tokens_is_a_clear_error(tiny_copy, tmp_path):
    published = tiny_copy / "lmwright-out" / "model"
    hf_dir = tmp_path / "foreign"
    _hf_llama(hf_dir, load_tokenizer(published).get_vocab_size(), seed=0)
    text = (published / "tokenizer.json").read_text()
    for t in [PAD, *CHAT_TOKENS]:  # a tokenizer with other names for them
        text = text.replace(t, t.replace("|", ""))
    (hf_dir / "tokenizer.json").write_text(text)
    with pytest.raises(LmwrightError, match=r"train\.init_from: the tokenizer of .* lacks the special tokens") as e:
        lmwright.run(tiny_copy, [*SHORT, f"train.init_from={hf_dir}"], until="pretrain", reporter=quiet())
    assert PAD in str(e.value) and CHAT_TOKENS[0] in str(e.value) and "resize_token_embeddings" in str(e.value)


def test_a_bad_init_from_names_the_field(tiny_copy):
    with pytest.raises(LmwrightError, match=r"train\.init_from: 'nosuch@champion' is neither"):
        lmwright.run(tiny_copy, ["train.init_from=nosuch@champion"], until="pretrain", reporter=quiet())


@pytest.mark.slow
def test_distributed_continued_pretraining_starts_from_the_init_weights(tiny_copy):
    over = [*SHORT, "train.init_from=tiny@champion", "train.nproc=2"]  # the init path travels in the job file
    outs = lmwright.run(tiny_copy, over, until="pretrain", reporter=quiet())
    assert outs["pretrain"].summary["nproc"] == 2 and outs["pretrain"].summary["init_from"]["model"] == "tiny"
    x, y = _first_batch(tiny_copy, outs, over)
    with torch.no_grad():
        init_loss = load_hf(resolve_model(Workspace.open(tiny_copy), "tiny@champion")[0])(x, y).item()
    assert _history(outs["pretrain"])["loss"][0] == pytest.approx(init_loss, abs=1e-5)
