"""The store's lineage as a graph: every finished stage run and how their digests connect (each run's inputs by
digest, the runs that made and read each digest, the registered models). One walk upstream and one downstream serve
every reader: `lmwright lineage` and takedowns (ops/lineage.py, ops/takedown.py), a version's description in the
registry (ops/registry.py) and the licence check of the sources behind a model (core/licenses.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from lmwright.core.schema import Lineage, Model, StageRun
from lmwright.core.store import Store


@dataclass
class Graph:
    """Every finished stage run and how their digests connect."""

    runs: dict[int, StageRun] = field(default_factory=dict)
    inputs: dict[int, dict[str, str]] = field(default_factory=dict)  # run id -> {input name: digest}
    made_by: dict[str, StageRun] = field(default_factory=dict)  # output digest -> the first run that made it
    makers: dict[str, list[StageRun]] = field(default_factory=lambda: defaultdict(list))  # every one, in id order
    used_by: dict[str, list[StageRun]] = field(default_factory=lambda: defaultdict(list))
    models: list[Model] = field(default_factory=list)

    def maker(self, digest: str, reader: StageRun) -> StageRun | None:
        """The run that made `digest` for `reader`: identical content can come from several runs (a tokenizer
        trained on the same texts), and the one the pipeline used is the latest before the reader."""
        runs = self.makers.get(digest, [])
        return next((r for r in reversed(runs) if r.id < reader.id), runs[0] if runs else None)

    def upstream(self, run: StageRun) -> list[StageRun]:
        """`run` and every run upstream of it, nearest first."""
        out, seen, todo = [], set(), [run]
        while todo:
            r = todo.pop(0)
            if r.id in seen:
                continue
            seen.add(r.id)
            out.append(r)
            todo += [m for d in self.inputs.get(r.id, {}).values() if (m := self.maker(d, r)) is not None]
        return out

    def downstream(self, digests: set[str]) -> list[StageRun]:
        """Every run that read one of `digests`, or read what such a run made, in run order. A stage that was off
        (`skipped`) read nothing of its inputs, and its empty artifact is the same in every project: nothing is
        followed through it."""
        out: dict[int, StageRun] = {}
        todo = list(digests)
        while todo:
            d = todo.pop()
            for r in self.used_by.get(d, []):
                if r.id not in out:
                    out[r.id] = r
                    if r.output_digest and not (r.summary or {}).get("skipped"):
                        todo.append(r.output_digest)
        return sorted(out.values(), key=lambda r: r.id)


def graph(store: Store) -> Graph:
    g = Graph()
    with store.session() as s:
        for r in s.scalars(select(StageRun).where(StageRun.status == "done").order_by(StageRun.id)):
            g.runs[r.id] = r
            if r.output_digest:
                g.made_by.setdefault(r.output_digest, r)
                g.makers[r.output_digest].append(r)
        for row in s.scalars(select(Lineage).where(Lineage.direction == "input")):
            if row.run_id in g.runs:
                g.inputs.setdefault(row.run_id, {})[row.name] = row.digest
                g.used_by[row.digest].append(g.runs[row.run_id])
        g.models = list(s.scalars(select(Model).order_by(Model.id)))
    return g
