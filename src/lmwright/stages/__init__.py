"""The stages of a project, one module per lifecycle group: thin wiring over the library code below them.

    data.py      collect → clean → dedup → split, card
    tokens.py    tokenizer → tokenize
    pretrain.py  pretrain
    evaluate.py  evaluate → save → test
    finetune.py  sft, classify, preference
    report.py    report

`registry.py` lists them in pipeline order (`STAGES`), which is what `run_pipeline` is handed. This file imports
nothing: a stage's code version hashes the packages above its module, and this one must not reach every stage.
"""
