"""What the data stages kept, removed and quarantined, with samples per reason (`lmwright data inspect`).

It reads the artifacts of the data stages (each with `.path` and `.summary`); the command runs those stages first.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

DATA_STAGES = ("collect", "clean", "dedup")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def inspect_data(outcomes: dict, reason: str | None = None, samples: int = 3) -> dict:
    """Per data stage: read/kept/removed/quarantined counts and, per reason, a count and `samples` examples."""
    report: dict = {"stages": {}}
    for name in DATA_STAGES:
        o = outcomes[name]
        groups: dict[str, list[dict]] = defaultdict(list)
        removed_file = o.path / "removed.parquet"
        if removed_file.exists():
            for row in pq.read_table(removed_file).to_pylist():
                groups[row["reason"]].append({"locator": row["locator"], "text": _short(row["text"]),
                                              **({"duplicate_of": row["duplicate_of"]} if "duplicate_of" in row else {})})
        quarantine = Path(o.path / "quarantine.jsonl")
        if quarantine.exists():
            for line in quarantine.read_text(encoding="utf-8").splitlines():
                q = json.loads(line)
                groups[f"quarantined.{q['reason']}"].append({"locator": q["locator"], "text": q["detail"]})
        kept = pq.read_table(o.path / "docs.parquet", columns=["locator", "text"]).slice(0, samples).to_pylist()
        groups_out = [{"reason": r, "count": len(xs), "samples": xs[:samples]}
                      for r, xs in sorted(groups.items(), key=lambda kv: -len(kv[1]))
                      if reason is None or r.startswith(reason)]
        if reason is None or "kept".startswith(reason):
            groups_out.insert(0, {"reason": "kept", "count": o.summary["kept"],
                                  "samples": [{"locator": k["locator"], "text": _short(k["text"])} for k in kept]})
        report["stages"][name] = {k: o.summary[k] for k in ("read", "kept", "removed", "quarantined")}
        report["stages"][name]["groups"] = groups_out
    return report
