"""Where a task's items come from (a split of the project's documents, a file, the served request log) and where
its accepted labels go: a dataset version in the artifact store, recorded as an `annotate` run with lineage to the
split its items came from, holding every answer (who, when, which guideline version) beside the final labels.

The dataset (`lmwright annotate accept TASK`) is one directory:
- `labels.parquet`: one row per item with its final label and provenance, and every annotator's answer;
- `docs.parquet`: for items that are the project's documents, those documents with a `labels` column (JSON: the
  task's name -> its final label), so documents carry their labels to every stage that reads them;
- `finetune.jsonl`: the rows a fine-tuning recipe reads (classification rows, chat messages, preference pairs),
  ready for `finetune.<recipe>.data`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from lmwright.annotate import formats, labelstudio
from lmwright.annotate import project as ap
from lmwright.annotate import review as ar
from lmwright.annotate.tasks import AnnotationError
from lmwright.core.artifacts import ArtifactStore
from lmwright.core.store import Store
from lmwright.data.document import doc_json, read_docs, write_docs


def label_value(value: dict):
    """An answer as a document label: the label, the rating, the choice, the text; the label list of a multilabel
    task and the spans of a spans task as they are."""
    for k in ("label", "rating", "choice", "text", "labels", "spans"):
        if k in value:
            return value[k]
    return value


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[:limit]
    return head[:head.rfind("\n")] if "\n" in head[limit // 2:] else head


def _sample(records: list[dict], limit: int) -> list[dict]:
    """At most `limit` records, a stable sample by key (the same items as the corpus grows, plus new ones)."""
    return sorted(records, key=lambda r: hashlib.sha256(r["key"].encode()).hexdigest())[:limit]


def items_from_split(path: Path, split: str, kind: str, limit: int, max_chars: int, digest: str) -> list[dict]:
    """Item records from a split's documents (key: the document id; source: the split and its artifact's digest,
    which `accept` records as the labelled dataset's input)."""
    if kind == "preference":
        raise AnnotationError("a preference task compares two answers to a prompt, which documents are not; "
                              "give its items in a file (items: {from: file, path: pairs.jsonl}) with prompt, a, b")
    docs = read_docs(path)
    recs = [{"key": d["id"], "data": {"text": _cut(d["text"], max_chars)}, "source": f"split:{split}@{digest}",
             "gold": None, "predictions": [], "annotations": [], "final": None} for d in docs if d["text"].strip()]
    if kind == "text":  # a document to answer or rewrite: shown as the prompt
        for r in recs:
            r["data"] = {"prompt": r["data"]["text"]}
    return _sample(recs, limit)


def items_from_requests(store: Store, kind: str, limit: int, max_chars: int) -> list[dict]:
    """Item records from served requests whose prompt was kept (`serve.log_prompts`): key the request id. A chat
    prompt (logged as its messages in JSON) is shown as its last user turn; a rating task rates the answer."""
    out = []
    for r in store.requests(limit=100_000):
        if not r.prompt or r.status != 200 or r.endpoint.startswith("shadow:"):  # what the client got
            continue
        prompt = r.prompt
        try:
            turns = json.loads(prompt)
            if isinstance(turns, list):
                prompt = next((t.get("content", "") for t in reversed(turns) if t.get("role") == "user"), prompt)
        except (ValueError, AttributeError):
            pass
        data = {"text": _cut(prompt, max_chars)}
        if kind == "rating" and r.output:
            data = {"prompt": _cut(prompt, max_chars), "response": _cut(r.output, max_chars)}
        elif kind == "text":
            data = {"prompt": _cut(prompt, max_chars)}
        elif kind == "preference":
            raise AnnotationError("a preference task needs two answers per prompt; the request log keeps one. "
                                  "Give its items in a file with prompt, a, b")
        out.append({"key": r.request_id, "data": data, "source": f"requests:{r.model}", "gold": None,
                    "predictions": [], "annotations": [], "final": None})
    return _sample(out, limit)


def items_from_file(path: Path, task, text_field: str = "text", id_field: str | None = None,
                    label_field: str | None = None, limit: int | None = None, as_: str = "gold",
                    annotator: str | None = None) -> list[dict]:
    """Item records from a Label Studio JSON export (with its answers, predictions and gold), or a JSONL or CSV file
    whose label column, if any, holds gold answers (`as_="gold"`) or `annotator`'s answers (`as_="annotation"`)."""
    if not path.is_file():
        raise AnnotationError(f"{path}: no such file (annotate task '{task.name}')")
    if path.suffix == ".json":
        recs = labelstudio.read_labelstudio(path, task)
    else:
        recs = formats.read_rows(path, task, text_field=text_field, label_field=label_field, id_field=id_field,
                                 as_=as_ if label_field else None, annotator=annotator)
    return recs[:limit]


def accept(store: Store, artifacts: ArtifactStore, name: str) -> dict:
    """Write the task's final labels as a dataset version (see the module docstring) and record it as an `annotate`
    run: its inputs are the split versions whose documents were items (named in each item's source). Items without
    a final label, and documents no longer in that split version, are counted, not lost."""
    t0 = time.time()
    task = ap.task(store, name)
    recs = ar.records(store, name)
    final = [r for r in recs if r["final"]]
    if not final:
        raise AnnotationError(f"task '{name}' has no final labels yet: answers settle when `overlap` annotators "
                              f"agree, or when a reviewer decides (lmwright annotate status {name})")
    staging = artifacts.new_dir()
    formats.write_parquet(recs, task, staging / "labels.parquet")
    rows = formats.to_finetune(final, task)
    formats.write_jsonl(rows, staging / "finetune.jsonl")
    labelled = {r["key"]: r["final"]["value"] for r in final}
    docs, inputs = [], {}
    for source in sorted({r["source"] for r in final if r["source"].startswith("split:") and "@" in r["source"]}):
        split, digest = source.removeprefix("split:").split("@", 1)
        path = artifacts.root / digest / f"{split}.parquet"
        if not path.is_file():
            raise AnnotationError(f"task '{name}': its items came from split version {digest[:12]} ({split}), which "
                                  f"is no longer in the artifact store; sync the task again from the current split")
        inputs[f"split/{split}"] = digest
        keys = {r["key"] for r in final if r["source"] == source}
        docs += [d for d in read_docs(path) if d["id"] in keys]
    if docs:  # the task's label joins those the document already carries (a source's, another task's)
        write_docs(staging / "docs.parquet", docs,
                   {"labels": [json.dumps(doc_json(d, "labels") | {name: label_value(labelled[d["id"]])})
                               for d in docs]})
    docs_n = len(docs)
    digest = artifacts.commit(staging)
    annotators = sorted({a["annotator"] for r in recs for a in r["annotations"]})
    how: dict[str, int] = {}
    for r in final:
        how[r["final"]["how"]] = how.get(r["final"]["how"], 0) + 1
    summary = {"task": name, "kind": task.kind, "items": len(recs), "final": len(final),
               "without_final": len(recs) - len(final), "finetune_rows": len(rows), "documents": docs_n,
               "documents_missing": sum(1 for r in final if r["source"].startswith("split:")) - docs_n,
               "annotators": annotators, "how": how,
               "guideline_versions": sorted({v for r in final if (v := r["final"].get("guideline_version"))}),
               "headline": f"{len(final):,} of {len(recs):,} items labelled ({', '.join(f'{n} {k}' for k, n in sorted(how.items()))}) "
                           f"by {len(annotators)} annotator(s)"}
    run = store.start_run("annotate", digest, {"task": name}, "annotate")
    store.finish_run(run, digest, summary, inputs, [(f"annotate/{name}", str(artifacts.root / digest),
                                                     len(final))], None, time.time() - t0)
    store.audit("annotation_accept", task=name, digest=digest, final=len(final), annotators=annotators)
    return {**summary, "digest": digest, "path": str(artifacts.root / digest), "run_id": run.id}
