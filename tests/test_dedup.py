"""Exact and near-duplicate removal: MinHash is calibrated, LSH finds near copies, the keeper is deterministic."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.parquet as pq

import lmwright
from lmwright.data.dedup import exact_dedup
from lmwright.data.minhash import near_duplicate_clusters, shingle_hashes, signatures
from tests.conftest import make_project, quiet

WORDS = ("time data value system file module object string list return error class method function name "
         "option default result number type argument path buffer stream socket thread lock queue event").split()


def _doc(rng: random.Random, n: int = 60) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def _mutate(rng: random.Random, text: str, k: int) -> str:
    w = text.split()
    for j in range(k):
        w[rng.randrange(len(w))] = f"edit{j}"
    return " ".join(w)


def test_exact_dedup_keeps_smallest_id_regardless_of_order():
    docs = [{"id": "b", "text": "Hello  World"}, {"id": "a", "text": "hello world"}, {"id": "c", "text": "other"}]
    for order in (docs, docs[::-1]):
        kept, removed = exact_dedup(order)
        assert sorted(d["id"] for d in kept) == ["a", "c"]
        assert [(d["id"], k) for d, k in removed] == [("b", "a")]


def test_minhash_estimate_is_unbiased_with_the_expected_spread():
    rng = random.Random(0)
    errors, expected = [], []
    for _ in range(200):
        a = _doc(rng)
        b = _mutate(rng, a, rng.randint(1, 6))
        ha, hb = set(shingle_hashes(a, 5).tolist()), set(shingle_hashes(b, 5).tolist())
        true = len(ha & hb) / len(ha | hb)
        sig = signatures([a, b], 5, 128)
        errors.append(float((sig[0] == sig[1]).mean()) - true)
        expected.append((true * (1 - true) / 128) ** 0.5)
    assert abs(np.mean(errors)) < 0.01
    assert np.std(errors) < 1.3 * np.mean(expected)  # a broken hash family shows as a much wider spread


def test_near_duplicates_are_clustered_and_the_smallest_id_kept():
    rng = random.Random(1)
    base = [_doc(rng, 150) for _ in range(30)]
    texts = base + [_mutate(rng, base[0], 1), _mutate(rng, base[0], 2), _mutate(rng, base[5], 1)]
    ids = [f"id{i:03d}" for i in range(len(texts))]
    for order in (list(range(len(texts))), list(reversed(range(len(texts))))):
        t, i = [texts[k] for k in order], [ids[k] for k in order]
        clusters = near_duplicate_clusters(i, signatures(t, 5, 112), bands=14, threshold=0.75)
        got = sorted(sorted(i[m] for m, _ in c) for c in clusters)
        assert got == [["id000", "id030", "id031"], ["id005", "id032"]]
        assert all(i[c[0][0]] == min(i[m] for m, _ in c) for c in clusters)  # keeper first, smallest id


def test_dedup_stage_reports_clusters_and_accounts(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = random.Random(2)
    base = [_doc(rng, 70) for _ in range(12)]
    rows = base + [base[3], _mutate(rng, base[7], 1)]
    (corpus / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    root = make_project(tmp_path, {"data": {"sources": [{"kind": "files", "paths": ["corpus/*.jsonl"],
                                                         "profile": "minimal"}]}})
    out = lmwright.run(root, until="dedup", reporter=quiet())
    s = out["dedup"].summary
    assert s["removed"] == {"exact_duplicate": 1, "near_duplicate": 1} and s["kept"] == 12
    assert s["read"] == s["kept"] + sum(s["removed"].values())
    clusters = [json.loads(x) for x in (out["dedup"].path / "clusters.jsonl").read_text().splitlines()]
    assert len(clusters) == 1 and clusters[0]["removed"][0]["similarity"] >= 0.75
    removed = pq.read_table(out["dedup"].path / "removed.parquet").to_pylist()
    near = [r for r in removed if r["reason"] == "near_duplicate"][0]
    assert near["duplicate_of"] == clusters[0]["kept"]["id"] and float(near["similarity"]) >= 0.75
