"""The artifact store (content addressing, atomic commit, hash check on read) and the metadata store."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lmwright.core.artifacts import ArtifactCorrupt, ArtifactStore
from lmwright.core.store import Store


def test_artifacts_are_content_addressed_and_verified(tmp_path):
    store = ArtifactStore(tmp_path / "a")
    d1 = store.new_dir()
    (d1 / "x.txt").write_text("hello")
    (d1 / "sub").mkdir()
    (d1 / "sub" / "y.bin").write_bytes(b"\x00\x01")
    digest = store.commit(d1)
    d2 = store.new_dir()
    (d2 / "x.txt").write_text("hello")
    (d2 / "sub").mkdir()
    (d2 / "sub" / "y.bin").write_bytes(b"\x00\x01")
    assert store.commit(d2) == digest and not d2.exists()  # same content, stored once
    fresh = ArtifactStore(tmp_path / "a")  # a new process: nothing verified yet
    assert (fresh.open(digest) / "x.txt").read_text() == "hello"
    (fresh.root / digest / "x.txt").write_text("tampered")
    with pytest.raises(ArtifactCorrupt, match="failed its hash check"):
        ArtifactStore(tmp_path / "a").open(digest)


def test_audit_log_is_append_only(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.audit("run", detail="x")
    assert [a.action for a in store.audit_log()] == ["run"]
    with store.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE audit SET action='forged'"))
    with store.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("DELETE FROM audit"))


def test_lineage_and_registry_after_a_run(tiny_run):
    from sqlalchemy import select

    from lmwright.core.store import Lineage, StageRun
    from lmwright.core.workspace import Workspace

    root, out = tiny_run
    store = Store(Workspace.open(root).store_url)
    with store.session() as s:
        runs = {r.stage: r for r in s.scalars(select(StageRun).where(StageRun.status == "done"))}
        inputs = s.scalars(select(Lineage).where(Lineage.run_id == runs["pretrain"].id,
                                                 Lineage.direction == "input")).all()
    assert {i.name: i.digest for i in inputs} == {"tokenize": out["tokenize"].digest,
                                                 "tokenizer": out["tokenizer"].digest}
    assert runs["pretrain"].params["train"]["max_steps"] == 24 and runs["pretrain"].code_version
    assert runs["collect"].duration_s is not None and "python" in runs["collect"].params["extra"]
    names = {d.name for d in store.datasets()}
    assert {"raw", "clean", "dedup", "split/train", "split/val", "split/test"} <= names
    models = {m.name: m for m in store.models()}
    assert sorted(models) == ["tiny", "tiny-assistant", "tiny-classifier"]  # pretrained, then fine-tuned twice
    assert models["tiny"].n_params > 0 and "bits_per_byte" in models["tiny"].metrics["val"]
    assert models["tiny-assistant"].metrics["base"] == "tiny"
    assert any(a.action == "run" for a in store.audit_log())
