"""Data quality over time: each dataset version's quality figures and how they changed from the version before.

A dataset version is a distinct output of the split stage (its content digest): the documents a model trains and
is judged on. The card stage is not the unit, since its digest also changes when only the card's wording or plots
do. Nothing is stored twice: the figures are the summaries the data stages already record in the store, found by
following the split run's inputs upstream (split <- dedup <- clean <- collect); the language mix comes from the
card run made from that split, when there is one.

`quality(summaries)` turns the data stages' summaries into the figures (the model card uses it too);
`history(store)` lists every version, oldest first, each with its change from the previous one (`lmwright data
history`).
"""

from __future__ import annotations

from typing import Any

from lmwright.core.schema import Lineage, StageRun
from lmwright.core.store import Store

_STAGES = ("collect", "clean", "dedup", "split", "card")


def quality(s: dict[str, dict]) -> dict[str, Any]:
    """The quality figures of one dataset version from its data stages' summaries (`collect`, `clean`, `dedup`,
    `split`, and `card` if there is one): documents read and kept at each step, removals by reason, PII found by
    type, the duplicate rate, the language mix and the splits."""
    col, cl, dd, sp = (s.get(k) or {} for k in ("collect", "clean", "dedup", "split"))
    removed: dict[str, int] = {}
    for st in (col, cl, dd):
        for reason, n in (st.get("removed") or {}).items():
            removed[reason] = removed.get(reason, 0) + n
    if col.get("quarantined"):
        removed["quarantined"] = removed.get("quarantined", 0) + col["quarantined"]
    pii = dict(cl.get("pii") or {})
    splits = dict(sp.get("splits") or {})
    kept = sum(splits.values()) if splits else dd.get("kept", 0)
    read = col.get("read", 0)
    dups = sum((dd.get("removed") or {}).values())
    languages = (s.get("card") or {}).get("languages")
    return {
        "documents_read": read, "documents_collected": col.get("kept", 0), "chars_collected": col.get("chars"),
        "documents_kept": kept, "kept_rate": kept / read if read else None,
        "by_source": dict(col.get("by_source") or {}),
        "removed": dict(sorted(removed.items(), key=lambda kv: (-kv[1], kv[0]))),
        "removed_total": sum(removed.values()),
        "pii": pii, "pii_total": sum(pii.values()),
        "duplicates": dups, "duplicate_rate": dups / dd["read"] if dd.get("read") else None,
        "languages": dict(languages) if languages else None,
        "splits": splits,
    }


def change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed from one version's figures to the next: counts and rates as differences, removals and PII
    by reason or type (only those that moved), and each language's share of the kept documents."""
    out: dict[str, Any] = {}
    for k in ("documents_read", "documents_kept", "removed_total", "pii_total", "duplicates", "kept_rate",
              "duplicate_rate"):
        a, b = before.get(k), after.get(k)
        if a is not None and b is not None:
            out[k] = b - a
    for k in ("removed", "pii"):
        a, b = before.get(k) or {}, after.get(k) or {}
        moved = {r: b.get(r, 0) - a.get(r, 0) for r in sorted(set(a) | set(b)) if b.get(r, 0) != a.get(r, 0)}
        out[k] = moved
    la, lb = before.get("languages"), after.get("languages")
    if la and lb:
        share = lambda d, k: d.get(k, 0) / max(1, sum(d.values()))  # noqa: E731
        out["language_share"] = {k: round(share(lb, k) - share(la, k), 6) for k in sorted(set(la) | set(lb))
                                 if share(lb, k) != share(la, k)}
    return out


def history(store: Store) -> list[dict[str, Any]]:
    """Every dataset version (distinct split output), oldest first: its digest, when it was first made, the
    figures of `quality` and the change from the version before."""
    from sqlalchemy import select

    with store.session() as s:
        runs = list(s.scalars(select(StageRun).where(StageRun.stage.in_(_STAGES), StageRun.status == "done")
                              .order_by(StageRun.id)))
        ids = [r.id for r in runs]
        inputs: dict[int, dict[str, str]] = {}
        for row in s.scalars(select(Lineage).where(Lineage.run_id.in_(ids), Lineage.direction == "input")):
            inputs.setdefault(row.run_id, {})[row.name] = row.digest
    first: dict[tuple[str, str], StageRun] = {}  # (stage, output digest) -> the first run that made it
    card_of: dict[str, StageRun] = {}  # split digest -> the latest card run made from it
    for r in runs:
        first.setdefault((r.stage, r.output_digest), r)
        if r.stage == "card" and "split" in inputs.get(r.id, {}):
            card_of[inputs[r.id]["split"]] = r
    out: list[dict[str, Any]] = []
    for (stage, digest), run in first.items():
        if stage != "split":
            continue
        summaries: dict[str, dict] = {"split": run.summary or {}}
        up = run
        for name in ("dedup", "clean", "collect"):  # each data stage has the one before it as its input
            d = inputs.get(up.id, {}).get(name)
            up = first.get((name, d)) if d else None
            if up is None:
                break
            summaries[name] = up.summary or {}
        if digest in card_of:
            summaries["card"] = card_of[digest].summary or {}
        figures = quality(summaries)
        row = {"version": digest[:12], "digest": digest, "run": run.id,
               "date": f"{run.finished_at:%Y-%m-%d %H:%M}" if run.finished_at else None, **figures,
               "change": change(out[-1], figures) if out else None}
        out.append(row)
    return out
