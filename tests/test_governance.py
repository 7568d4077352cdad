"""Governance: the audit log's hash chain (tampering detected, concurrent writers, upgrades, PostgreSQL), lineage
queries both ways with their OpenLineage export, and a takedown that removes a planted canary document from every
rebuilt artifact, with its exposure falling."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import uuid

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

import lmwright
from lmwright.cli import app
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from tests.conftest import TINY, make_project, quiet
from tests.test_registry import _legacy

runner = CliRunner()


# -- the audit chain ---------------------------------------------------------------------------------------------------

def _project(tmp_path):
    root = make_project(tmp_path / "p")
    return root, Store(Workspace.open(root).store_url)


def test_a_changed_removed_or_cut_audit_row_is_found_and_audit_verify_says_where(tmp_path):
    root, store = _project(tmp_path)
    for i in range(5):
        store.audit("promote", model="m", to_version=i, note="ünïcode ✓", when=(1, 2))
    assert store.verify_audit() == []
    r = runner.invoke(app, ["audit", "--verify", "-C", str(root), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["verified"] is True
    head = json.loads(r.stdout)["head"]
    assert head == store.audit_log()[-1].hash

    db = store.engine.url.database
    con = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):  # the triggers refuse it through SQL ...
        con.execute("UPDATE audit SET actor = 'mallory' WHERE id = 3")
    con.execute("DROP TRIGGER audit_no_update")  # ... so the attacker goes around them
    con.execute("DROP TRIGGER audit_no_delete")
    con.execute("UPDATE audit SET detail = json_set(detail, '$.to_version', 9) WHERE id = 3")
    con.commit()
    problems = store.verify_audit()
    assert {"id": 3, "problem": "its content does not match its hash (the row was changed)"} in problems
    assert sum("trigger audit_no_" in p["problem"] for p in problems) == 2  # and the missing guards are named
    r = runner.invoke(app, ["audit", "--verify", "-C", str(root)])
    assert r.exit_code == 5 and "row 3" in r.stderr

    con.execute("DELETE FROM audit WHERE id = 3")
    con.commit()
    chain = [p for p in store.verify_audit() if p["id"] is not None]
    assert [p["id"] for p in chain] == [4] and "removed" in chain[0]["problem"]

    # rows cut from the end leave a chain that holds: only a head hash kept elsewhere shows it
    con.execute("DELETE FROM audit WHERE id >= 4")
    con.commit()
    assert [p for p in store.verify_audit() if p["id"] is not None] == []
    assert any("head hash" in p["problem"] for p in store.verify_audit(expect_head=head))
    r = runner.invoke(app, ["audit", "--verify", "--expect-head", head, "-C", str(root)])
    assert r.exit_code == 5 and "cut from the end" in r.stderr
    con.close()


def test_concurrent_writers_extend_one_chain(tmp_path):
    _, store = _project(tmp_path)
    threads = [threading.Thread(target=lambda k=k: [Store(store.engine.url.render_as_string(False))
                                                    .audit("run", writer=k, i=i) for i in range(15)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.audit_log()
    assert len(rows) == 60 and store.verify_audit() == []
    assert len({r.prev_hash for r in rows}) == 60  # no fork: each row extends a different one


def test_an_upgraded_store_has_its_old_rows_chained_and_its_old_keys_kept_as_admin(tmp_path):
    store = Store(_legacy(tmp_path / "old.db"))
    assert len(store.audit_log()) == 2 and store.verify_audit() == []
    assert [(k.name, k.role) for k in store.api_keys()] == [("alice", "admin")]
    store.audit("after_upgrade")
    assert store.verify_audit() == []


def test_the_chain_and_append_only_hold_on_postgresql(pg_url):
    store = Store(pg_url)
    for i in range(3):
        store.audit("export", model="m", i=i)
    assert store.verify_audit() == []
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as c:
        c.execute(text("UPDATE audit SET actor = 'mallory'"))
    with store.engine.begin() as c:
        c.execute(text("ALTER TABLE audit DISABLE TRIGGER audit_append_only"))
        c.execute(text("UPDATE audit SET actor = 'mallory' WHERE id = 2"))
        c.execute(text("ALTER TABLE audit ENABLE TRIGGER audit_append_only"))
    assert [p["id"] for p in store.verify_audit()] == [2]


# -- lineage -------------------------------------------------------------------------------------------------------------

def _a_train_document(root):
    import pyarrow.parquet as pq

    ws = Workspace.open(root)
    store = Store(ws.store_url)
    split = next(r for r in store.runs(500) if r.stage == "split" and r.status == "done")
    return pq.read_table(ws.artifacts_dir / split.output_digest / "train.parquet", columns=["id"])["id"][0].as_py()


def test_lineage_runs_both_ways_from_a_document_a_model_and_a_request(tiny_copy):
    from lmwright.ops.lineage import query

    ws = Workspace.open(tiny_copy)
    store = Store(ws.store_url)
    doc = _a_train_document(tiny_copy)

    q = query(ws, doc)
    assert q["kind"] == "document" and q["upstream"]["sources"][0]["source"] == "pydocs"
    assert {d["stage"] for d in q["downstream"]["datasets"]} == {"collect", "clean", "dedup", "split"}
    split = next(d for d in q["downstream"]["datasets"] if d["stage"] == "split")
    assert split["documents"] == {"train": 1}
    reached = {r["stage"] for r in q["downstream"]["runs"]}
    assert {"tokenizer", "tokenize", "pretrain", "save"} <= reached
    assert "tiny@1" in [m["model"] for m in q["downstream"]["models"]]
    assert {"model": "tiny", "alias": "champion", "version": 1} in q["downstream"]["deployments"]

    m = query(ws, "tiny@champion")
    assert m["kind"] == "model" and m["subject"]["model"] == "tiny@1"
    assert [s["source"] for s in m["upstream"]["sources"]] == ["pydocs"]
    assert {"collect", "split", "tokenizer", "pretrain"} <= {r["stage"] for r in m["upstream"]["runs"]}
    assert m["upstream"]["splits"]["train"] > 0

    digest = store.models()[0].digest
    store.log_requests([{"request_id": "chatcmpl-lineage1", "endpoint": "chat", "model": "tiny",
                         "model_digest": digest, "model_version": 1, "status": 200, "flags": {}}])
    store.add_feedback(request_id="chatcmpl-lineage1", rating=4)
    r = runner.invoke(app, ["lineage", "chatcmpl-lineage1", "-C", str(tiny_copy), "--json"])
    assert r.exit_code == 0, r.output
    q = json.loads(r.stdout)
    assert q["kind"] == "request" and q["subject"]["model"] == "tiny@1"
    assert q["upstream"]["sources"][0]["source"] == "pydocs" and q["downstream"]["feedback"][0]["rating"] == 4
    assert query(ws, "tiny@1")["downstream"]["models"][0]["requests"] == 1

    r = runner.invoke(app, ["lineage", "nothing-like-this", "-C", str(tiny_copy)])
    assert r.exit_code != 0 and "names nothing" in str(r.exception)


def test_openlineage_events_form_one_graph_of_runs_and_versioned_datasets(tiny_copy):
    out = tiny_copy / "events.jsonl"
    r = runner.invoke(app, ["lineage", "--openlineage", str(out), "-C", str(tiny_copy)])
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in out.read_text().splitlines()]
    store = Store(Workspace.open(tiny_copy).store_url)
    done = [x for x in store.runs(500) if x.status == "done"]
    assert len(events) == 2 * len(done)
    for e in events:
        assert {"eventType", "eventTime", "run", "job", "producer", "schemaURL", "inputs", "outputs"} <= set(e)
        uuid.UUID(e["run"]["runId"])
        assert e["job"]["namespace"] == "lmwright://tiny"
    starts = {e["run"]["runId"] for e in events if e["eventType"] == "START"}
    completes = [e for e in events if e["eventType"] == "COMPLETE"]
    assert starts == {e["run"]["runId"] for e in completes}
    made = {o["facets"]["version"]["datasetVersion"]: o["name"] for e in completes for o in e["outputs"]}
    pretrain = next(e for e in completes if e["job"]["name"] == "pretrain")
    # every input of a run is a dataset version some run made, under the same name
    for i in pretrain["inputs"]:
        assert made[i["facets"]["version"]["datasetVersion"]] == i["name"]
    save = next(e for e in completes if e["job"]["name"] == "save")
    assert save["outputs"][0]["name"] == "model/tiny"

    # posted to a lineage server, in order, one event per request (a loopback stand-in for Marquez)
    import http.server

    got = []

    class Lineage(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the handler's name is http.server's
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Lineage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/v1/lineage"
        r = runner.invoke(app, ["lineage", "tiny@1", "--post", url, "-C", str(tiny_copy)])
        assert r.exit_code == 0, r.output
    finally:
        server.shutdown()
    assert got and got[0]["eventType"] == "START" and {e["job"]["name"] for e in got} >= {"collect", "save"}
    assert "report" in {e["job"]["name"] for e in got}  # downstream of tiny@1 too


# -- takedown ------------------------------------------------------------------------------------------------------------

CANARY = {"name": "zq7vk", "secret": "3 1 4 1 5 9", "repeats": 30}


def _exposure(root, ref: str) -> float:
    from lmwright.core.models import resolve_model
    from lmwright.evaluate.risk import exposure
    from lmwright.model.hf import load_hf
    from lmwright.tokenizer import load_tokenizer

    path, _, _ = resolve_model(Workspace.open(root), ref)
    return exposure(load_hf(path).eval(), load_tokenizer(path), CANARY, 300, 1)["exposure"]


@pytest.mark.slow
def test_forgetting_a_planted_canary_takes_it_out_of_every_rebuilt_artifact_and_its_exposure_falls(tmp_path):
    from lmwright.data.canaries import CANARY_FRAME
    from lmwright.ops.lineage import find_documents, reached

    spec = copy.deepcopy(TINY)
    spec["data"]["sources"][0]["modules"] = ["json", "textwrap", "string", "csv"]
    spec["data"]["sources"].append({"kind": "files", "name": "uploads", "paths": ["uploads/*.txt"],
                                    "license": "CC0-1.0", "profile": "minimal"})
    spec["data"]["dedup"] = {"exact": False, "near": {"enabled": False}}  # the canary's copies all stay
    spec["train"]["max_steps"] = 60
    spec["finetune"] = {"sft": {"enabled": False}, "classify": {"enabled": False}}
    root = make_project(tmp_path / "p", spec)
    (root / "uploads").mkdir()
    for i in range(CANARY["repeats"]):
        (root / "uploads" / f"note{i}.txt").write_text(f"Note {i}. " + CANARY_FRAME.format(**CANARY) + "\n")
    (root / "uploads" / "keep.txt").write_text("A note that has nothing secret in it, about string formatting.\n")
    lmwright.run(root, reporter=quiet())
    before = _exposure(root, "tiny@1")

    r = runner.invoke(app, ["forget", "--match", "canary zq7vk", "--dry-run", "-C", str(root), "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert len(plan["documents"]) == CANARY["repeats"] and not (root / ".lmwright" / "quarantine").exists()
    assert [m["model"] for m in plan["models"]] == ["tiny@1"] and plan["deployments"][0]["alias"] == "champion"

    r = runner.invoke(app, ["forget", "--match", "canary zq7vk", "-C", str(root)])
    assert r.exit_code != 0 and "--yes" in str(r.exception)  # 30 of 72 documents: more than a tenth, confirmed
    r = runner.invoke(app, ["forget", "--match", "canary zq7vk", "--reason", "erasure request #12", "--yes", "-C",
                            str(root), "--json"])
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    assert done["retired"] == ["tiny@1"] and done["mode"] == "quarantine"
    assert {"collect", "split", "tokenizer", "pretrain", "save"} <= set(done["rebuild"])
    assert all((root / ".lmwright" / "quarantine" / d).is_dir() for d in done["moved"])
    ws = Workspace.open(root)
    store = Store(ws.store_url)
    audit = [a for a in store.audit_log() if a.action == "takedown"]
    assert audit[0].detail["documents"] == CANARY["repeats"] and audit[0].detail["reason"] == "erasure request #12"
    assert next(m for m in store.models() if m.version == 1).weights == "quarantined"
    for args in (["rollback", "tiny"], ["promote", "tiny@1", "--to", "staging"]):  # nothing puts it back
        assert runner.invoke(app, [*args, "-C", str(root)]).exit_code != 0
    assert "taken down" in str(runner.invoke(app, ["promote", "tiny@1", "--to", "staging", "-C", str(root)]).exception)
    one = done["documents"][0]["id"]
    q = json.loads(runner.invoke(app, ["lineage", one, "-C", str(root), "--json"]).stdout)
    assert q["subject"]["taken_down"][0]["reason"] == "erasure request #12"
    # before the rebuild, a second takedown still finds its document (in the quarantined collection)
    r = runner.invoke(app, ["forget", "--doc", one.upper(), "--dry-run", "-C", str(root), "--json"])
    assert [d["id"] for d in json.loads(r.stdout)["documents"]] == [one]
    assert "not a document id" in str(runner.invoke(app, ["forget", "--doc", "nothex", "-C", str(root)]).exception)

    outcomes = lmwright.run(root, reporter=quiet())  # the rebuild
    collect = outcomes["collect"].summary
    assert collect["removed"] == {"takedown": CANARY["repeats"]} and collect["by_source"]["uploads"] == 1
    gone = {d["id"] for d in done["documents"]}
    assert reached(ws, gone)["datasets"] == []  # in no dataset the store still has (only in the quarantine)
    assert set(find_documents(ws, "match", "canary zq7vk")) == gone
    for stage in ("clean", "dedup", "split"):
        for f in outcomes[stage].path.glob("*.parquet"):
            assert "zq7vk" not in f.read_bytes().decode("latin-1")
    after = _exposure(root, "tiny@champion")
    assert before > 8 and after < before - 5, (before, after)
    assert store.verify_audit() == []
    r = runner.invoke(app, ["status", "-C", str(root), "--json"])
    g = json.loads(r.stdout)["governance"]
    assert g["audit_chain"] == "holds" and g["takedowns"][0]["documents"] == CANARY["repeats"]

    # the takedown's record is the denylist: removing it around the triggers is found
    con = sqlite3.connect(store.engine.url.database)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM takedowns")
    con.execute("DROP TRIGGER takedowns_no_delete")
    con.execute("DELETE FROM takedowns")
    con.commit()
    con.close()
    problems = [p["problem"] for p in store.verify_audit()]
    assert any("record of takedown #1 is gone" in p for p in problems), problems


def test_a_takedown_takes_the_duplicates_deduplication_grouped_with_a_document(tiny_copy):
    import pyarrow.parquet as pq

    from lmwright.ops.takedown import plan

    ws = Workspace.open(tiny_copy)
    dedup = next(r for r in Store(ws.store_url).runs(500) if r.stage == "dedup" and r.status == "done")
    removed = pq.read_table(ws.artifacts_dir / dedup.output_digest / "removed.parquet").to_pylist()
    copy_ = next(d for d in removed if d["reason"] == "near_duplicate")
    p = plan(ws, "doc", copy_["duplicate_of"])  # the copy dedup kept; the one it removed goes too
    assert {d["id"] for d in p["documents"]} >= {copy_["duplicate_of"], copy_["id"]} and p["duplicates"] >= 1
    assert plan(ws, "doc", copy_["duplicate_of"], duplicates_too=False)["duplicates"] == 0


def test_what_serves_is_audited_each_time_it_changes(tiny_copy):
    import os

    import yaml

    from lmwright.ops.deploy import live_plan

    ws = Workspace.open(tiny_copy)
    follow = live_plan(ws)
    follow()
    follow()  # nothing changed: no second row
    spec = yaml.safe_load((tiny_copy / "lmwright.yaml").read_text())
    spec["deploy"] = {"models": [{"name": "docs", "routes": [{"model": "tiny@1"}]}]}
    (tiny_copy / "lmwright.yaml").write_text(yaml.safe_dump(spec))
    os.utime(tiny_copy / "lmwright.yaml", (1, 1))  # a different mtime even within the clock's resolution
    follow()
    rows = [a for a in Store(ws.store_url).audit_log() if a.action == "deploy"]
    assert len(rows) == 2
    assert [d["routes"][0]["version"] for d in rows[0].detail["deployments"]] == ["tiny-assistant@1", "tiny@1"]
    assert [d["name"] for d in rows[1].detail["deployments"]] == ["docs"]

    from lmwright.ops.lineage import query

    q = query(Workspace.open(tiny_copy), "docs")  # the deployment's lineage: what it serves, and what that came from
    assert q["kind"] == "deployment" and q["subject"]["routes"] == ["tiny@1 (100%)"]
    assert q["upstream"]["sources"][0]["source"] == "pydocs" and q["downstream"]["models"][0]["model"] == "tiny@1"


def test_retraining_never_learns_a_taken_down_text_from_a_correction(tmp_path):
    from lmwright.ops import lifecycle

    _, store = _project(tmp_path)
    store.log_requests([{"request_id": f"chatcmpl-{i}", "endpoint": "chat.completions", "model": "a",
                         "model_digest": "d", "status": 200, "flags": {},
                         "prompt": json.dumps([{"role": "user", "content": f"question {i}"}])} for i in range(4)])
    for i in range(4):
        store.add_feedback(request_id=f"chatcmpl-{i}",
                           correction="the code of zq7vk is 3 1 4" if i == 1 else f"answer {i}")
    store.add_takedown("match", "zq7vk", None, [], [], {})
    train, held, acc = lifecycle.corrections(store, 0.0)
    assert acc["removed"] == {"taken down (lmwright forget)": 1} and len(train) + len(held) == 3


def test_a_risk_criterion_that_does_not_apply_to_a_model_does_not_hold_it_back(tiny_copy):
    from lmwright.core import registry
    from lmwright.ops.registry import gate

    ws = Workspace.open(tiny_copy, ["requirements.acceptance=[\"risk.injection_rate <= 0.5\"]"])
    store = Store(ws.store_url)
    base = registry.version(store, "tiny@1")
    (check,) = gate(ws, base, "challenger").checks
    assert check["verdict"] == "not applicable" and "system prompt" in check["why"]
    assert gate(ws, base, "challenger").passed
    classifier = registry.version(store, "tiny-classifier@1")
    assert gate(ws, classifier, "challenger").checks[0]["verdict"] == "not applicable"
