"""Tokenizer training, special tokens, shards and the bytes accounting behind bits-per-byte."""

from __future__ import annotations

import json

import numpy as np

from lmwright.evaluate.lm import token_bytes
from lmwright.tokenizer import (
    BOS,
    EOS,
    SPECIAL_TOKENS,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
    write_shards,
)

TEXTS = ["Return a new list containing all items from the iterable in ascending order.",
         "Serialize obj to a JSON formatted str. Ünïcödé text too: naïve café — ok.",
         "The quick brown fox jumps over the lazy dog. " * 3]


def test_train_save_load_roundtrip(tmp_path):
    tok = train_tokenizer(TEXTS * 20, vocab_size=320, min_frequency=1)
    for s in SPECIAL_TOKENS:
        assert tok.token_to_id(s) is not None
    save_tokenizer(tok, tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["bos_token"] == BOS and cfg["eos_token"] == EOS and "chat_template" in cfg
    again = load_tokenizer(tmp_path)
    enc = again.encode(TEXTS[1])
    assert enc.ids[0] == again.token_to_id(BOS)  # BOS prepended, Llama style
    assert again.decode(enc.ids) == TEXTS[1]  # byte-level: lossless


def test_shards_and_byte_accounting(tmp_path):
    tok = train_tokenizer(TEXTS * 20, vocab_size=320, min_frequency=1)
    meta = write_shards(tok, {"train": TEXTS, "val": TEXTS[:1]}, tmp_path)
    train = np.load(tmp_path / "train.npy", mmap_mode="r")
    assert train.dtype == np.uint16 and isinstance(train, np.memmap)
    assert meta["splits"]["train"]["tokens"] == train.size and meta["splits"]["train"]["docs"] == 3
    assert train[0] == tok.token_to_id(BOS) and (train == tok.token_to_id(EOS)).sum() == 3
    nbytes = token_bytes(tok)
    assert int(nbytes[train.astype(np.int64)].sum()) == sum(len(t.encode()) for t in TEXTS)
    assert nbytes[tok.token_to_id(BOS)] == 0
