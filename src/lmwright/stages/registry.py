"""The default pipeline: every stage, in order. The CLI and the Python API hand this to `run_pipeline`.

collect → clean → dedup → split → card → tokenizer → tokenize → pretrain → evaluate → save → test
→ sft → classify → preference (fine-tuning; preference off by default) → report
"""

from __future__ import annotations

from lmwright.core.pipeline import Stages, registry
from lmwright.stages import data, evaluate, finetune, pretrain, report, tokens

STAGES: Stages = registry(
    data.collect, data.clean, data.dedup, data.split, data.card,
    tokens.tokenizer, tokens.tokenize,
    pretrain.pretrain,
    evaluate.evaluate, evaluate.save, evaluate.test,
    finetune.sft, finetune.classify, finetune.preference,
    report.report,
)
