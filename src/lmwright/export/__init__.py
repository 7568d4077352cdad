"""Export a saved model: `lmwright export --format hf|onnx|gguf|int8`.

- hf: the Hugging Face directory itself (LlamaForCausalLM or Qwen3ForCausalLM, safetensors, tokenizer);
- onnx: `model.onnx` (input_ids -> logits, dynamic batch and length) from `torch.onnx.export`, checked against
  onnxruntime on the spot; the tokenizer files beside it;
- gguf: one `model.gguf` for llama.cpp (llama architecture, f32 or f16 weights, the BPE tokenizer inside);
- int8: the ONNX export with int8 weights (onnxruntime dynamic quantization), with its size, speed and loss
  change measured against the fp32 export.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lmwright.errors import LmwrightError

FORMATS = ("hf", "onnx", "gguf", "int8")
def export(model_dir: Path, fmt: str, out: Path, check_texts: list[str] | None = None, **options) -> dict:
    """Write `fmt` for the model in `model_dir` to the directory `out`; returns what was written and checked."""
    if fmt not in FORMATS:
        raise LmwrightError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        shutil.copytree(model_dir, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("MANIFEST.json"))
        return {"format": "hf", "path": str(out)}
    try:
        if fmt == "gguf":
            from lmwright.export.gguf import write_gguf

            return write_gguf(model_dir, out / "model.gguf", **options)
        from lmwright.export.onnx import export_onnx, quantize_int8

        res = export_onnx(model_dir, out)
        if fmt == "int8":
            res = quantize_int8(model_dir, out, check_texts or [])
        return res
    except ImportError as exc:
        from lmwright.core.packages import extra_hint

        raise LmwrightError(f"exporting {fmt} needs {exc.name}: {extra_hint('export')}") from None
