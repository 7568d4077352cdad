"""ONNX export (`torch.onnx.export`, the dynamo exporter) checked against onnxruntime, and int8 weights by
onnxruntime's dynamic quantization.

The graph takes `input_ids` (batch, length) and returns `logits` (batch, length, vocab), with batch and length
dynamic up to the model's context. The check runs random ids through both and requires the largest logit
difference to stay within 1e-4. The int8 model keeps activations in float and quantizes the matmul weights
per tensor; its report compares file size, forward time and loss on given texts with the fp32 export.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lmwright.errors import LmwrightError

TOLERANCE = 1e-4
# what an ONNX runtime user needs beside the graph to tokenize and to read the model's shape
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "config.json")


def copy_tokenizer(model_dir: Path, out: Path) -> None:
    for name in TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, out / name)


def onnx_bytes(path: Path) -> int:
    """The model file plus its external weights (`model.onnx.data`), which the exporter writes beside it."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def export_onnx(model_dir: Path, out: Path) -> dict:
    import onnxruntime as ort

    from lmwright.model.hf import load_hf

    model = load_hf(model_dir).eval()
    cfg = model.cfg
    example = torch.randint(0, cfg.vocab_size, (2, min(16, cfg.max_seq_len)))
    dims = {"ids": {0: torch.export.Dim("batch", max=1024), 1: torch.export.Dim("length", max=cfg.max_seq_len)}}
    path = out / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["input_ids"], output_names=["logits"],
                          dynamic_shapes=dims, dynamo=True, verbose=False)
    copy_tokenizer(model_dir, out)
    check = torch.randint(0, cfg.vocab_size, (3, min(cfg.max_seq_len, 40)), generator=torch.Generator().manual_seed(0))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": check.numpy()})[0]
    with torch.no_grad():
        want = model(check).numpy()
    diff = float(np.abs(got - want).max())
    if diff > TOLERANCE:
        raise LmwrightError(f"{path}: onnxruntime's logits differ from PyTorch's by {diff:.2e} (limit {TOLERANCE})")
    return {"format": "onnx", "path": str(path), "bytes": onnx_bytes(path), "max_abs_logit_diff": diff}


def _loss(sess, texts_ids: list[list[int]]) -> float:
    total, n = 0.0, 0
    for ids in texts_ids:
        logits = sess.run(None, {"input_ids": np.asarray([ids[:-1]], dtype=np.int64)})[0][0]
        logits = logits - logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        total -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
        n += len(ids) - 1
    return total / max(n, 1)


def quantize_int8(model_dir: Path, out: Path, texts: list[str]) -> dict:
    """`model.int8.onnx` beside `model.onnx`; size, speed and loss of both on `texts` (the validation split)."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from lmwright.tokenizer import load_tokenizer

    fp32, int8 = out / "model.onnx", out / "model.int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    tok = load_tokenizer(model_dir)
    from lmwright.model.hf import load_hf

    limit = load_hf(model_dir).cfg.max_seq_len
    ids = [tok.encode(t).ids[:limit + 1] for t in texts if t.strip()] or [tok.encode("The json module").ids]
    ids = [x for x in ids if len(x) > 1]
    rows = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        batch = np.asarray([ids[0][:-1]], dtype=np.int64)
        for _ in range(3):
            sess.run(None, {"input_ids": batch})
        t = time.perf_counter()
        for _ in range(20):
            sess.run(None, {"input_ids": batch})
        rows[name] = {"bytes": onnx_bytes(path), "ms_per_forward": (time.perf_counter() - t) / 20 * 1e3,
                      "loss": _loss(sess, ids)}
    return {"format": "int8", "path": str(int8), "fp32": rows["fp32"], "int8": rows["int8"],
            "size_ratio": rows["int8"]["bytes"] / rows["fp32"]["bytes"],
            "speedup": rows["fp32"]["ms_per_forward"] / rows["int8"]["ms_per_forward"],
            "loss_change": rows["int8"]["loss"] - rows["fp32"]["loss"], "texts": len(ids)}
