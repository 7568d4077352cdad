"""Operations after a model is built: the floor above serving, below the stages.

What lives here, one module each: the registry's promotion gates and transitions (`registry`), deployment with
canary, shadow and rollback (`deploy`), monitoring with drift, SLOs and alerts (`monitor`), the lifecycle of
retraining and retirement (`lifecycle`), and governance: lineage queries, takedown, the audit chain and model cards
(`governance`). It may import every floor below it (core, data, evaluate, train, finetune, export, serve) and is
imported only by the stages and the CLI. See docs/architecture.md.
"""
