"""Retirement: `lmwright retire NAME@VERSION [--successor REF] [--after DATE]`.

Retiring announces an end: every alias on the version moves to its successor at once (so default traffic moves),
and traffic that still names the version itself (a deployment route pinned to `NAME@VERSION`) is answered with
`Deprecation` and `Sunset` headers, and counted, until the date; after it, with 410 naming the successor. Once the
date has passed, `lmwright retire` (again, or at once without `--after`) finishes the job: the version's artifact
(weights and all) is archived to `.lmwright/archive/` as a tar.gz, deleted, or kept (`deploy.retired_weights`), while
its config, tokenizer and any model card are kept under `lmwright-out/retired/NAME-vN/` with a retirement report
(what was moved, kept and released), and its lineage, evaluations and audit stay in the store.

Refused: an unknown version; retiring a version an alias points at without a successor to move it to (the only
champion, say); a successor that is itself retired, or the version itself.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from datetime import datetime, timezone

from lmwright.core import registry
from lmwright.core.artifacts import ArtifactStore
from lmwright.core.schema import Model
from lmwright.core.store import Store, utcnow
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError

KEEP = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "README.md", "metrics.json"}  # what a retired version keeps: all but weights


def parse_when(text: str) -> datetime:
    """A date or date-time (ISO 8601; UTC when no zone is given), or `now`."""
    if text.strip().lower() == "now":
        return utcnow()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise LmwrightError(f"--after {text!r}: give a date such as 2026-12-31 or 2026-12-31T18:00") from None
    return _utc(when)


def _utc(when: datetime) -> datetime:
    """In UTC, which is how the store keeps times (SQLite drops the offset rather than converting)."""
    return when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)


def retire(ws: Workspace, ref: str, successor: str | None = None, after: datetime | None = None,
           reason: str | None = None) -> dict:
    """Announce (and, when its date has come, complete) the retirement of the version `ref` names."""
    store = Store(ws.store_url)
    name, what = registry.split_ref(ref)
    if what is None:
        raise LmwrightError(f"name the version to retire: {name}@VERSION (see `lmwright models show {name}`)")
    m = registry.version(store, ref)
    if m is None:
        raise registry.unknown(store, name)
    label = f"{m.name}@{m.version}"
    after = _utc(after) if after else None
    if m.retire_after is not None:  # announced before: a new date moves it; when due, finish it
        if m.retired_at is not None:
            return {"ref": label, "said": f"{label} is already retired ({m.weights})", "report": None}
        named = registry.version(store, successor) if successor else None
        if successor and (f"{named.name}@{named.version}" if named else successor) != m.successor:
            raise LmwrightError(f"{label} is already retiring with successor {m.successor or 'none'}; its successor "
                                "cannot change now (its aliases already moved)")
        if after is not None:
            registry.schedule_retirement(store, m.id, m.successor, after)
            registry.record(store, m.name, "retire", m.version, None, reason or "new date",
                            {"after": after.isoformat(), "successor": m.successor})
            store.audit("retire", model=m.name, version=m.version, after=after.isoformat(), rescheduled=True)
            m = registry.version(store, label)
        if not registry.is_retired(m):
            return {"ref": label, "report": None,
                    "said": f"{label} is deprecated until {registry.as_utc(m.retire_after):%Y-%m-%d %H:%M:%S} UTC; run this again "
                            "after that (or with --after now) to archive its weights"}
        return {"ref": label, **finish(ws, m)}
    succ = _successor(store, m, successor)
    held = registry.aliases(store, m.name)
    held = [a for a in held if a.version == m.version]
    if held and succ is None:
        names_ = ", ".join(f"@{a.alias}" for a in held)
        raise LmwrightError(f"{label} is {names_}: retiring it would leave no version behind "
                            f"{'that alias' if len(held) == 1 else 'those aliases'}; give --successor "
                            f"{m.name}@VERSION (the aliases move to it), or move them first (`lmwright promote`)")
    if held and succ.name != m.name:
        raise LmwrightError(f"{label}'s aliases cannot move to {succ.name}@{succ.version}, a different model; give a "
                            f"successor that is a version of {m.name}")
    now = utcnow()
    when = after or now
    succ_label = f"{succ.name}@{succ.version}" if succ else None
    moved = []
    for a in held:
        registry.move_alias(store, m.name, a.alias, succ.version, "retire", reason or f"{label} retires",
                            expect=(a.version, a.revision))
        moved.append(f"{m.name}@{a.alias}: {m.version} -> {succ.version}")
    registry.schedule_retirement(store, m.id, succ_label, when)
    registry.record(store, m.name, "retire", m.version, succ.version if succ and succ.name == m.name else None,
                    reason, {"after": when.isoformat(), "successor": succ_label})
    store.audit("retire", model=m.name, version=m.version, successor=succ_label, after=when.isoformat(),
                reason=reason, aliases_moved=moved)
    out = {"ref": label, "successor": succ_label, "after": when.isoformat(), "aliases_moved": moved}
    if when <= now:
        m = registry.version(store, label)
        return {**out, **finish(ws, m, moved)}
    return {**out, "report": None,
            "said": f"{label} is deprecated until {when:%Y-%m-%d %H:%M:%S} UTC: requests that still name it get "
                    f"Deprecation and Sunset headers, then 410" + (f" naming {succ_label}" if succ_label else "")
                    + (f"; moved {', '.join(moved)}" if moved else "")}


def _successor(store: Store, m: Model, ref: str | None) -> Model | None:
    if ref is None:
        return None
    s = registry.version(store, ref)
    if s is None:
        raise LmwrightError(f"--successor {ref!r}: no such registered model")
    if s.id == m.id:
        raise LmwrightError(f"--successor {ref!r} is the version being retired")
    if registry.is_retired(s) or s.retire_after is not None:
        raise LmwrightError(f"--successor {ref!r} is itself retired or retiring; name a live version")
    return s


def finish(ws: Workspace, m: Model, moved: list[str] | None = None) -> dict:
    """Archive, delete or keep the version's artifact as the spec says, keep what is not weights, write the
    retirement report; returns its figures."""
    store, policy = Store(ws.store_url), ws.spec.deploy.retired_weights
    label = f"{m.name}@{m.version}"
    arts = ArtifactStore(ws.artifacts_dir)
    src = arts.root / m.digest
    kept_dir = ws.out_dir / "retired" / f"{m.name}-v{m.version}"
    kept_dir.mkdir(parents=True, exist_ok=True)
    kept, released, archive = [], 0, None
    shared = [f"{x.name}@{x.version}" for x in store.models()
              if x.digest == m.digest and x.id != m.id and x.retire_after is None]
    if shared:  # the same content is a live version too: its weights stay for it
        policy = "keep"
    existed = src.exists()
    if existed:
        for p in sorted(src.rglob("*")):
            if p.is_file() and p.name in KEEP:
                target = kept_dir / p.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, target)
                kept.append(str(target.relative_to(ws.root)))
        size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
        if policy == "archive":
            archive = ws.internal / "archive" / f"{m.name}-v{m.version}-{m.digest[:12]}.tar.gz"
            archive.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive.with_suffix(".part"), "w:gz") as tar:
                tar.add(src, arcname=m.digest)
            archive.with_suffix(".part").replace(archive)
        if policy != "keep":
            shutil.rmtree(src)
            released = size - (archive.stat().st_size if archive else 0)
    state = {"archive": "archived", "delete": "deleted", "keep": "present"}[policy] if existed else "deleted"
    registry.mark_retired(store, m.id, state)
    report = {
        "version": label, "digest": m.digest, "retired_at": utcnow().isoformat(), "successor": m.successor,
        "weights": state, "moved": {"aliases": moved or [], "artifact": str(archive.relative_to(ws.root)) if archive
                                     else None},
        "kept": {"files": kept, "store": ["the model's registry row and tags", "its lineage", "its test evaluations",
                                          "its request-log rows and feedback", "the audit log and transition history"]},
        "released_bytes": released, "shared_with": shared,
    }
    (kept_dir / "retirement.json").write_text(json.dumps(report, indent=2))
    (kept_dir / "RETIREMENT.md").write_text(_markdown(report), encoding="utf-8")
    registry.record(store, m.name, "retired", m.version, None, None, {"weights": state, "released_bytes": released})
    store.audit("retired", model=m.name, version=m.version, weights=state, archive=report["moved"]["artifact"],
                released_bytes=released)
    return {"report": str((kept_dir / "RETIREMENT.md").relative_to(ws.root)), "weights": state,
            "released_bytes": released,
            "said": f"{label} retired: weights {state}" + (f" to {report['moved']['artifact']}" if archive else "")
                    + (f" (kept: the same content is {', '.join(shared)})" if shared else "")
                    + f", {_size(released)} of disk released; report in {kept_dir.relative_to(ws.root)}"}


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{n} bytes"


def _markdown(r: dict) -> str:
    lines = [f"# Retirement of {r['version']}", "", f"- retired at: {r['retired_at']}",
             f"- successor: {r['successor'] or 'none'}", f"- content digest: {r['digest']}", "", "## Moved", ""]
    lines += [f"- alias {a}" for a in r["moved"]["aliases"]] or ["- no alias pointed at it"]
    lines += [f"- the artifact (weights and all) to {r['moved']['artifact']}" if r["moved"]["artifact"]
              else f"- the weights were {r['weights']}"]
    lines += ["", "## Kept", ""] + [f"- {f}" for f in r["kept"]["files"]] + [f"- {s}" for s in r["kept"]["store"]]
    lines += ["", "## Released", "", f"- {_size(r['released_bytes'])} of disk (the artifact's size less the archive's)",
              ""]
    return "\n".join(lines)

