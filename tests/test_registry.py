"""The model registry: versions and aliases everywhere a model is named, the promotion gate, rollback, retirement
refusals, the transition history, schema migrations from release 0.1.0's store, and the same store, registry and
tuning on a real PostgreSQL server with several processes at once."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import lmwright
from lmwright.cli import app
from lmwright.core import migrate, registry
from lmwright.core.models import resolve_model
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.ops import registry as ops
from lmwright.ops.deploy import build_app
from tests.conftest import live, quiet

DATA = Path(__file__).parent / "data"


def cli(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def refused(r, text: str) -> bool:
    """The command stopped with an LmwrightError saying `text` (what `lmwright` prints as "error: ...", exit 2)."""
    return isinstance(r.exception, LmwrightError) and text in str(r.exception)


@pytest.fixture
def proj(two_versions, tmp_path):
    dest = tmp_path / "proj"
    shutil.copytree(two_versions, dest)
    return dest


def test_a_run_that_passes_makes_champions_and_one_that_fails_moves_nothing(proj):
    store = Store(Workspace.open(proj).store_url)
    assert [(a.name, a.alias, a.version) for a in registry.aliases(store)] == [
        ("tiny", "champion", 1), ("tiny-assistant", "champion", 1), ("tiny-classifier", "champion", 1)]
    assert [t.action for t in registry.history(store, "tiny")] == ["run"]
    assert [m.version for m in registry.versions(store, "tiny")] == [1, 2]
    # the same project with a criterion it cannot meet: exit 3, a summary, and no alias moves
    r = cli("run", "-C", str(proj), "--set", "train.max_steps=3", "--set", "requirements.acceptance=[test.loss <= 0.01]")
    assert r.exit_code == 3, r.output
    assert "acceptance failed" in r.output and "test.loss <= 0.01" in r.output
    assert [(a.name, a.alias, a.version) for a in registry.aliases(store)][0] == ("tiny", "champion", 1)
    # with criteria it meets, the 3-step version is still not made the challenger: it is worse than the champion
    assert cli("run", "-C", str(proj), "--set", "train.max_steps=3").exit_code == 0
    assert registry.alias_of(store, "tiny", "challenger") is None
    assert registry.alias_of(store, "tiny-assistant", "challenger").version == 2  # no test figures to compare


def test_aliases_resolve_in_every_command_that_takes_a_model(proj):
    ws = Workspace.open(proj)
    store = Store(ws.store_url)
    v1, v2 = registry.versions(store, "tiny")
    ops.promote(ws, "tiny@2", "challenger")
    assert resolve_model(ws, "tiny@champion")[2] == v1.digest
    assert resolve_model(ws, "tiny@challenger")[2] == v2.digest
    assert resolve_model(ws, "tiny@latest")[2] == resolve_model(ws, "tiny")[2] == v2.digest
    with pytest.raises(LmwrightError, match="no alias 'nope'; its aliases: @challenger \\(v2\\), @champion"):
        resolve_model(ws, "tiny@nope")
    d = str(proj)
    for args in (["evaluate", "tiny@nope", "-C", d], ["test", "tiny@nope", "-C", d],
                 ["export", "tiny@nope", "-C", d], ["chat", "tiny@nope", "-C", d],
                 ["deploy", "--model", "tiny@nope", "-C", d],
                 ["finetune", "sft", "-C", d, "--base", "tiny@nope"], ["models", "show", "tiny@nope", "-C", d]):
        r = cli(*args)
        assert refused(r, "has no alias 'nope'"), (args, r.output, r.exception)
    r = cli("evaluate", "tiny@challenger", "-C", d, "--json")
    assert r.exit_code == 0, r.output
    r = cli("export", "tiny@challenger", "-C", d, "--json", "--out", str(proj / "exp"))
    assert r.exit_code == 0 and json.loads(r.stdout)["format"] == "hf"
    r = cli("chat", "tiny@challenger", "-C", d, "--max-tokens", "2", input="hi\n/quit\n")
    assert r.exit_code == 0 and "chatting with tiny@2" in r.output
    r = cli("deploy", "--model", "tiny@challenger", "-C", d, "--json")
    assert json.loads(r.stdout)[0]["routes"][0]["version"] == "tiny@2"
    with live(build_app(ws, "tiny@challenger")) as url:  # what `lmwright serve tiny@challenger` serves
        r = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 1})
        assert r.headers["x-lmwright-model-version"] == "tiny@2"
        assert r.json()["system_fingerprint"] == f"fp_{v2.digest[:12]}"
    r = cli("finetune", "sft", "-C", d, "--base", "tiny@challenger", "--set", "finetune.steps=2", "--json")
    assert r.exit_code == 0, r.output
    r = cli("test", "tiny@champion", "-C", d, "--json")
    assert r.exit_code == 0 and "already evaluated on the test split" in r.output  # tiny@1 was: a repeat warns


def test_the_gate_refuses_a_worse_challenger_naming_the_criteria_and_force_is_audited(proj):
    ws = Workspace.open(proj)
    store = Store(ws.store_url)
    with pytest.raises(LmwrightError) as e:
        ops.promote(ws, "tiny@2", "champion")
    said = str(e.value)
    assert "tiny@2 does not pass the gate for champion" in said and "worse than the champion tiny@1" in said
    assert "bits/byte on 12 test documents" in said and "--force --reason" in said
    assert refused(cli("promote", "tiny@2", "-C", str(proj)), "worse than the champion tiny@1")
    # a criterion that fails is named with its value
    strict = Workspace.open(proj, ["requirements.acceptance=[test.bits_per_byte <= 0.5, risk.pii_rate <= 0.05]"])
    with pytest.raises(LmwrightError, match=r"test.bits_per_byte <= 0.5: \d\.\d+ \(fail\)"):
        ops.promote(strict, "tiny@2", "champion")
    with pytest.raises(LmwrightError, match="--force needs --reason"):
        ops.promote(ws, "tiny@2", "champion", force=True)
    res = ops.promote(ws, "tiny@2", "champion", force=True, reason="the 3-step model, on purpose")
    assert res["forced"] and registry.alias_of(store, "tiny", "champion").version == 2
    t = registry.history(store, "tiny")[-1]
    assert (t.action, t.from_version, t.to_version, t.forced, t.reason) == (
        "promote", 1, 2, True, "the 3-step model, on purpose")
    assert "worse than the champion" in " ".join(t.detail["gate"]["failures"])
    audit = [a for a in store.audit_log() if a.action == "promote"][-1]
    assert audit.detail["forced"] and audit.detail["failures"] and audit.detail["reason"]
    # the comparison itself: better than tiny@2 by a clear margin, so tiny@1 passes back (no force)
    cmp_ = ops.gate(ws, registry.version(store, "tiny@1"), "champion").comparison
    assert cmp_["passed"] and cmp_["difference"] < 0 and cmp_["ci"][1] < 0
    assert ops.promote(ws, "tiny@1", "champion")["moved"]
    r = cli("models", "history", "tiny", "-C", str(proj), "--json")
    assert [h["action"] for h in json.loads(r.stdout)] == ["run", "promote", "promote"]


def test_rollback_returns_the_alias_and_refusals_are_clear(proj):
    ws = Workspace.open(proj)
    store = Store(ws.store_url)
    ops.promote(ws, "tiny@2", "champion", force=True, reason="try it")
    assert ops.rollback(ws, "tiny")["to_version"] == 1
    assert registry.alias_of(store, "tiny", "champion").version == 1
    assert registry.history(store, "tiny")[-1].action == "rollback"
    with pytest.raises(LmwrightError, match="no earlier version"):  # a second rollback does not undo the first
        ops.rollback(ws, "tiny")
    with pytest.raises(LmwrightError, match="has versions 1 to 2; 'tiny@9' is not one"):
        ops.promote(ws, "tiny@9")
    with pytest.raises(LmwrightError, match="no registered model 'nobody'"):
        ops.promote(ws, "nobody@1")
    with pytest.raises(LmwrightError, match="cannot be an alias"):
        registry.move_alias(store, "tiny", "latest", 1, "promote")
    r = cli("retire", "tiny@1", "-C", str(proj))
    assert refused(r, "tiny@1 is @champion") and "--successor" in str(r.exception)
    assert refused(cli("retire", "tiny@2", "-C", str(proj), "--successor", "tiny@2"), "is the version being retired")
    from lmwright.ops.retire import parse_when, retire

    retire(ws, "tiny@2", after=parse_when("2099-01-01"))
    with pytest.raises(LmwrightError, match="tiny@2 is retiring .*an alias cannot point at a retired version"):
        ops.promote(ws, "tiny@2", "challenger", force=True, reason="no")


def test_tags_list_and_show_carry_lineage(proj):
    d = str(proj)
    assert cli("models", "tag", "tiny@1", "reviewed=yes", "owner=ml", "-C", d).exit_code == 0
    r = cli("models", "tag", "tiny@1", "--remove", "owner", "-C", d)
    assert "reviewed=yes" in r.output and "owner" not in r.output
    rows = json.loads(cli("models", "list", "-C", d, "--json").stdout)
    assert [r["model"] for r in rows][:2] == ["tiny@1", "tiny@2"]
    assert rows[0]["aliases"] == ["champion"] and rows[0]["tags"] == {"reviewed": "yes"}
    show = json.loads(cli("models", "show", "tiny-assistant@champion", "-C", d, "--json").stdout)
    assert show["base"] == "tiny@1" and show["lineage"]["stage"] == "sft"
    base = json.loads(cli("models", "show", "tiny@1", "-C", d, "--json").stdout)
    stages = {r["stage"] for r in base["lineage"]["upstream"]}
    assert {"pretrain", "tokenizer", "tokenize", "split", "dedup", "clean", "collect"} <= stages
    assert {x["name"] for x in base["lineage"]["datasets"]} >= {"raw", "clean", "split/train"}
    assert base["lineage"]["spec"] and base["lineage"]["code_version"] and base["lineage"]["tokenizer"]
    assert base["figures"]["test.bits_per_byte"] > 0 and "risk.pii_rate" in base["figures"]


# -- the store's schema ---------------------------------------------------------------------------------------------

def _legacy(path: Path) -> str:
    con = sqlite3.connect(path)
    con.executescript((DATA / "store-0.1.0.sql").read_text())
    con.close()
    return f"sqlite:///{path}"


def test_a_store_from_release_0_1_0_upgrades_in_place(tmp_path):
    url = _legacy(tmp_path / "old.db")
    store = Store(url)
    assert [(m.name, m.version, m.weights) for m in store.models()] == [
        ("tiny", 1, "present"), ("tiny-assistant", 1, "present"), ("tiny-classifier", 1, "present")]
    assert [r.request_id for r in store.requests()] == ["chatcmpl-legacy1"] and store.feedback()[0].rating == 5
    assert store.api_keys()[0].name == "alice" and len(store.audit_log()) == 2
    with store.engine.connect() as c:
        from sqlalchemy import text

        assert c.execute(text("SELECT version_num FROM lmwright_schema_version")).scalar() == migrate.HEAD
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as c:
        c.execute(text("DELETE FROM audit"))
    registry.move_alias(store, "tiny", "champion", 1, "promote", "after the upgrade")
    assert Store(url).models()[0].version == 1  # opening again: already at the head, nothing to do


def test_a_failed_upgrade_puts_the_store_back_as_it_was(tmp_path, monkeypatch):
    import alembic.command

    path = tmp_path / "old.db"
    url = _legacy(path)

    def half_then_fail(cfg, revision):  # after the stamp (its version table), some DDL (SQLite commits it), an error
        cfg.attributes["connection"].exec_driver_sql("ALTER TABLE models ADD COLUMN version INTEGER")
        raise RuntimeError("disk full")

    monkeypatch.setattr(alembic.command, "upgrade", half_then_fail)
    with pytest.raises(LmwrightError, match="disk full.*put back as it was"):
        Store(url)
    monkeypatch.undo()
    con = sqlite3.connect(path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    columns = {r[1] for r in con.execute("PRAGMA table_info(models)")}
    con.close()
    assert "lmwright_schema_version" not in tables and "version" not in columns
    assert [m.version for m in Store(url).models()] == [1, 1, 1]  # and the next open upgrades it


def test_the_migrations_build_exactly_the_schema_the_code_reads(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from lmwright.core import migrate
    from lmwright.core.schema import Base

    for url in (f"sqlite:///{tmp_path / 'new.db'}", _legacy(tmp_path / "old.db")):
        store = Store(url)
        with store.engine.connect() as c:
            ctx = MigrationContext.configure(c, opts={"version_table": migrate.VERSION_TABLE})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], diff
    scripts = ScriptDirectory(str(Path(migrate.__file__).parent / "migrations"))
    assert scripts.get_current_head() == migrate.HEAD


# -- PostgreSQL ------------------------------------------------------------------------------------------------------

def _move(url: str, barrier, expect, to: int, out) -> None:
    store = Store(url)
    barrier.wait()
    try:
        registry.move_alias(store, "m", "champion", to, "promote", f"process {to}", expect=expect)
        out.put(("won", to))
    except registry.Conflict:
        out.put(("conflict", to))


def _race(url: str, n: int = 4) -> list:
    """n processes read the same alias, then all move it at once."""
    store = Store(url)
    a = registry.alias_of(store, "m", "champion")
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_move, args=(url, barrier, (a.version, a.revision), v, out)) for v in range(2, 2 + n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    return sorted(out.get(timeout=5) for _ in procs)


def _seed_models(url: str) -> Store:
    """Six versions of a model "m", registered as stage runs register them, and m@champion on version 1."""
    store = Store(url)
    for v in range(1, 7):
        run = store.start_run("save", f"fp{v}", {}, "code")
        store.finish_run(run, f"{v:064d}", {}, {}, [], ("m", 10, {}), 0.1)
    registry.move_alias(store, "m", "champion", 1, "promote", "first")
    return store


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_promoting_at_once_one_wins_the_other_conflicts(backend, tmp_path, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    store = _seed_models(url)
    results = _race(url)
    assert [r[0] for r in results].count("won") == 1 and [r[0] for r in results].count("conflict") == 3
    winner = next(v for r, v in results if r == "won")
    assert registry.alias_of(store, "m", "champion").version == winner
    moves = [(t.from_version, t.to_version) for t in registry.history(store, "m")]
    assert moves == [(None, 1), (1, winner)]  # the history holds exactly the move that happened


def test_the_store_and_registry_on_postgresql(pg_url, tmp_path):
    from sqlalchemy import text

    store = Store(pg_url)
    with store.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM lmwright_schema_version")).scalar() == migrate.HEAD
    store.audit("test", where="postgresql")
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as c:
        c.execute(text("UPDATE audit SET action = 'x'"))
    _seed_models(pg_url)
    registry.move_alias(store, "m", "challenger", 3, "promote", "canary")
    assert registry.version(store, "m@challenger").version == 3 and registry.version(store, "m").version == 6
    assert Store(pg_url).models()[-1].version == 6  # a second open: at the head already


@pytest.mark.slow
def test_a_project_with_its_store_on_postgresql_runs_promotes_and_tunes(tiny_run, pg_url, tmp_path):
    """The tiny project end to end with `project.store_url` on PostgreSQL: the pipeline records its runs there,
    the gate reads them, and two tuning processes share one Optuna study in the same database."""
    import optuna
    import yaml

    root = tmp_path / "pg"
    root.mkdir()
    spec = yaml.safe_load((tiny_run[0] / "lmwright.yaml").read_text())
    spec["project"]["store_url"] = pg_url
    (root / "lmwright.yaml").write_text(yaml.safe_dump(spec))
    lmwright.run(root, reporter=quiet())
    ws = Workspace.open(root)
    store = Store(pg_url)
    assert registry.alias_of(store, "tiny", "champion").version == 1
    lmwright.run(root, ["train.max_steps=3"], until="test", reporter=quiet())
    with pytest.raises(LmwrightError, match="worse than the champion tiny@1"):
        ops.promote(ws, "tiny@2", "champion")
    r = cli("tune", "-C", str(root), "--json", "--set", "tune.parallel=2", "--set", "tune.trials=4",
            "--set", "tune.pruner=none", "--set", "tune.trial_overrides=[train.max_steps=48, train.eval_every=24]")
    assert r.exit_code == 0, r.output
    name = json.loads(r.stdout)["study"]
    study = optuna.load_study(study_name=name, storage=pg_url)
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) >= 4
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # both processes ran trials, in one database


def test_a_model_directory_is_hashed_again_only_when_a_file_changes(tiny_copy, tmp_path, monkeypatch):
    """The server re-resolves its model every second; a directory's digest is kept while its files' sizes and
    change times stay, once they have been still for two seconds (a file changed within the same time stamp as it
    was hashed is hashed again), and a file rewritten to the same size gives the new content's digest."""
    import time
    from types import SimpleNamespace

    from lmwright.core import models

    ws = Workspace.open(tiny_copy)
    model = tmp_path / "model"
    shutil.copytree(tiny_copy / "lmwright-out" / "model", model)
    hashed, digest = [], models.file_digest
    monkeypatch.setattr(models, "file_digest", lambda p: hashed.append(p) or digest(p))
    first = resolve_model(ws, str(model))[2]
    n = len(hashed)
    assert n and resolve_model(ws, str(model))[2] == first and len(hashed) == 2 * n  # just copied: hashed again
    later = SimpleNamespace(time_ns=lambda: time.time_ns() + 10 ** 10)  # ten seconds on: the files are still
    monkeypatch.setattr(models, "time", later)
    assert resolve_model(ws, str(model))[2] == first and len(hashed) == 3 * n
    assert resolve_model(ws, str(model))[2] == first and len(hashed) == 3 * n  # kept: nothing hashed
    config = model / "config.json"
    text = config.read_text()
    config.write_text(text.replace('"llama"', '"LLAMA"'))  # the same size, other bytes
    changed = resolve_model(ws, str(model))[2]
    config.write_text(text)
    assert changed != first and resolve_model(ws, str(model))[2] == first
