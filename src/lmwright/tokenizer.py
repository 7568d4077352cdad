"""Byte-level BPE tokenizer (Hugging Face `tokenizers`) and token shards.

`train_tokenizer` learns the vocabulary on the train split only, with special tokens for bos/eos/pad and chat
roles, and a post-processor that prepends BOS (the Llama convention, so HF users get the same ids).
`copy_tokenizer` instead takes a model's own (continued pretraining: `train.init_from`).
`write_shards` turns each split into one flat token file (numpy memmap; uint16 when the vocabulary fits, else
uint32): each document is `<|bos|> tokens <|eos|>`. `meta.json` records token, byte and document counts, from
which bits-per-byte is computed.

The chat template's markers (`<|bos|>`, the role tokens, `<|end|>`) and its Jinja form, which `save_tokenizer`
writes into `tokenizer_config.json`, are defined in `lmwright.chat_template`; this module imports them from there
(and never the other way round, so there is no import circle).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from lmwright.chat_template import BOS, CHAT_TEMPLATE, CHAT_TOKENS, END_OF_TURN
from lmwright.errors import LmwrightError

EOS, PAD = "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, *CHAT_TOKENS]
# what a saved tokenizer is (`save_tokenizer`), in a tokenizer artifact and beside a saved model
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def special_ids(tok: Tokenizer) -> dict[str, int | None]:
    """The ids a saved model's config names: {"bos", "eos", "pad"}."""
    return {"bos": tok.token_to_id(BOS), "eos": tok.token_to_id(EOS), "pad": tok.token_to_id(PAD)}


def chat_stop_ids(tok: Tokenizer) -> frozenset[int]:
    """A chat turn ends at the template's end-of-turn token (as well as end-of-sequence)."""
    end = tok.token_to_id(END_OF_TURN)
    return frozenset() if end is None else frozenset({end})


def text_only(tok: Tokenizer) -> Tokenizer:
    """`tok`, set to read its input as text only: a special token spelled inside a text (`<|eos|>`, `<|system|>`)
    is encoded as the characters it is made of, never as the special token. Special tokens then come only from
    their ids: the post-processor's `<|bos|>` and the chat template's markers (`chat_template.encode_prompt`).
    Every tokenizer lmwright trains or loads is set so; the setting is not saved in `tokenizer.json`, so other
    tools read a saved tokenizer as they always do."""
    tok.encode_special_tokens = True
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)]),
    ])
    return text_only(tok)


def save_tokenizer(tok: Tokenizer, out_dir: Path, model_max_length: int | None = None) -> None:
    """`tokenizer.json` plus the `tokenizer_config.json` that `transformers` reads (with the chat template)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
        "add_bos_token": True, "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
        "additional_special_tokens": CHAT_TOKENS,
    }
    if model_max_length:
        config["model_max_length"] = model_max_length
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "additional_special_tokens": CHAT_TOKENS}, indent=2))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load from a `tokenizer.json` file or a directory holding one (a tokenizer artifact or a saved model)."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise LmwrightError(f"{path}: no tokenizer.json here; run `lmwright run` first or pass a model directory")
    return text_only(Tokenizer.from_file(str(file)))


def copy_tokenizer(model_dir: Path, out_dir: Path, field: str,
                   model_max_length: int | None = None) -> Tokenizer:
    """A model's own tokenizer, copied into `out_dir` (a model continues only on the token ids it was trained
    with): its tokenizer files byte for byte, lmwright's config files where it has none. It must hold the
    special tokens documents and chats are framed with; `field` names the setting in errors."""
    if not (model_dir / "tokenizer.json").is_file():
        raise LmwrightError(f"{field}: {model_dir} has no tokenizer.json; a model continues only on the "
                            "token ids it was trained with, so save its tokenizer (the `tokenizers` JSON "
                            "format) beside its config.json")
    tok = load_tokenizer(model_dir)
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise LmwrightError(
            f"{field}: the tokenizer of {model_dir} lacks the special tokens {' '.join(missing)}, which "
            f"lmwright frames documents ({BOS} ... {EOS}), padding and chats with. Fix: start from a model "
            "lmwright trained (its tokenizer has them), or add them to this model first (transformers: "
            "tokenizer.add_special_tokens({'additional_special_tokens': [...]}), "
            "model.resize_token_embeddings(len(tokenizer)), then save_pretrained both)")
    save_tokenizer(tok, out_dir, model_max_length)  # the config files, for a model that has none of its own
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out_dir / name)
    return tok


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_shards(tok: Tokenizer, splits: dict[str, list[str]], out_dir: Path,
                 on_progress: Callable[[int], None] = lambda n: None, batch: int = 512) -> dict:
    dtype = token_dtype(tok.get_vocab_size())
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    meta: dict = {"dtype": dtype.name, "vocab_size": tok.get_vocab_size(), "bos_id": bos, "eos_id": eos, "splits": {}}
    for name, texts in splits.items():
        chunks: list[np.ndarray] = []
        for i in range(0, len(texts), batch):
            part = texts[i : i + batch]
            for enc in tok.encode_batch(part, add_special_tokens=False):
                chunks.append(np.asarray([bos, *enc.ids, eos], dtype=dtype))
            on_progress(len(part))
        tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
        mm = np.lib.format.open_memmap(out_dir / f"{name}.npy", mode="w+", dtype=dtype, shape=tokens.shape)
        mm[:] = tokens
        mm.flush()
        del mm
        meta["splits"][name] = {
            "tokens": int(tokens.size),
            "docs": len(texts),
            "bytes": sum(len(t.encode("utf-8")) for t in texts),
            # bos/eos are not text: bits-per-byte counts only the text's own tokens' loss over its bytes
            "text_tokens": int(tokens.size - 2 * len(texts)),
        }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
