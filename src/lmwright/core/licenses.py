"""Licence compatibility: may a model published under one licence be trained on a source under another?

Whether a model's weights are a derivative of their training data, and what a share-alike or copyleft clause asks of
them, is a legal judgment that no table settles. This table is a conservative policy, not legal advice: it assumes
the weights are an adaptation of every source, so each source's conditions carry over to the model. Edit `TERMS` to
follow your own counsel (and say so in the model card). Its verdicts:

- permissive (MIT, BSD, Apache-2.0, PSF-2.0, ...), attribution (CC-BY-4.0) and public domain (CC0-1.0): any model
  licence; keep the sources' notices and credit them (the model card lists them);
- share-alike (CC-BY-SA-4.0) and copyleft (GPL, LGPL, AGPL, MPL): the model must carry a licence the source allows
  for derivatives, named in `allows`;
- non-commercial (CC-BY-NC-*): the model's licence must itself be non-commercial;
- no-derivatives (CC-BY-ND-*), proprietary and other: no openly licensed model (a model marked `proprietary` or
  `other` passes, with a reminder to check the agreement);
- unknown (or a licence not in the table): `governance.unknown_license` decides, warn or block.

`check` turns a model's sources into findings; a finding with `blocks` stops `lmwright export` and fails the
registry's promotion gate, naming the source, its licence, the model's licence and the fix. `trained_on` finds the
sources that reached a registered model by following the store's lineage to the collect runs upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmwright.core.store import Store

_NC = frozenset({"cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0"})
_CLOSED = frozenset({"proprietary", "other"})


@dataclass(frozen=True)
class Terms:
    family: str  # permissive | public-domain | attribution | share-alike | copyleft | non-commercial | ...
    allows: frozenset[str] | None  # the model licences a derivative may carry; None: any
    why: str  # what the source's licence asks of a model trained on it


def _terms(family: str, why: str, allows: set[str] | frozenset[str] | None = None) -> Terms:
    return Terms(family, frozenset(allows) if allows is not None else None, why)


_PERMISSIVE = "permissive: any model licence; keep the copyright and licence notice"
TERMS: dict[str, Terms] = {
    **{k: _terms("permissive", _PERMISSIVE) for k in (
        "psf-2.0", "python-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "apache-2.0", "isc", "zlib", "0bsd",
        "unlicense")},
    "cc0-1.0": _terms("public-domain", "public-domain dedication: any model licence"),
    "public-domain": _terms("public-domain", "public domain: any model licence"),
    "cc-by-4.0": _terms("attribution", "attribution: any model licence; credit the source (the model card does)"),
    "cc-by-sa-4.0": _terms("share-alike", "share-alike: a model trained on it is an adaptation, which must carry "
                           "the same licence (Creative Commons also lists GPL-3.0 as compatible; this table keeps to "
                           "the same licence)", {"cc-by-sa-4.0"}),
    "cc-by-nc-4.0": _terms("non-commercial", "non-commercial: the model may not be under a licence that allows "
                           "commercial use", _NC),
    "cc-by-nc-sa-4.0": _terms("non-commercial share-alike", "non-commercial and share-alike: the model must carry "
                              "the same licence", {"cc-by-nc-sa-4.0"}),
    "cc-by-nd-4.0": _terms("no-derivatives", "no derivatives: a model trained on it may not be published",
                           _CLOSED),
    "cc-by-nc-nd-4.0": _terms("no-derivatives", "non-commercial, no derivatives: a model trained on it may not be "
                              "published", _CLOSED),
    "gpl-2.0": _terms("copyleft", "copyleft (GPL-2.0 only): the model must be under GPL-2.0", {"gpl-2.0"}),
    "gpl-2.0-or-later": _terms("copyleft", "copyleft: the model must be under GPL-2.0 or later",
                               {"gpl-2.0", "gpl-2.0-or-later", "gpl-3.0", "gpl-3.0-or-later"}),
    "gpl-3.0": _terms("copyleft", "copyleft: the model must be under GPL-3.0 (or AGPL-3.0, which GPL-3.0 allows "
                      "combining with)", {"gpl-3.0", "gpl-3.0-or-later", "agpl-3.0", "agpl-3.0-or-later"}),
    "gpl-3.0-or-later": _terms("copyleft", "copyleft: the model must be under GPL-3.0 or later",
                               {"gpl-3.0", "gpl-3.0-or-later", "agpl-3.0", "agpl-3.0-or-later"}),
    "lgpl-2.1": _terms("weak copyleft", "weak copyleft, taken strictly here: the model must be under LGPL-2.1 or, "
                       "as its section 3 allows, the GPL", {"lgpl-2.1", "gpl-2.0", "gpl-2.0-or-later", "gpl-3.0",
                                                           "gpl-3.0-or-later"}),
    "lgpl-2.1-or-later": _terms("weak copyleft", "weak copyleft, taken strictly here: the model must be under the "
                                "LGPL (2.1 or later) or the GPL", {"lgpl-2.1", "lgpl-2.1-or-later", "lgpl-3.0",
                                                                   "lgpl-3.0-or-later", "gpl-2.0", "gpl-2.0-or-later",
                                                                   "gpl-3.0", "gpl-3.0-or-later"}),
    "lgpl-3.0": _terms("weak copyleft", "weak copyleft, taken strictly here: the model must be under LGPL-3.0 or "
                       "GPL-3.0", {"lgpl-3.0", "lgpl-3.0-or-later", "gpl-3.0", "gpl-3.0-or-later", "agpl-3.0"}),
    "mpl-2.0": _terms("weak copyleft", "file-level copyleft, taken strictly here: the model must be under MPL-2.0 "
                      "or a GPL-family licence it allows", {"mpl-2.0", "lgpl-2.1", "lgpl-2.1-or-later", "lgpl-3.0",
                                                            "lgpl-3.0-or-later", "gpl-2.0", "gpl-2.0-or-later",
                                                            "gpl-3.0", "gpl-3.0-or-later", "agpl-3.0",
                                                            "agpl-3.0-or-later"}),
    "agpl-3.0": _terms("network copyleft", "network copyleft: the model must be under AGPL-3.0", {"agpl-3.0"}),
    "proprietary": _terms("proprietary", "proprietary: no openly licensed model; check the agreement", _CLOSED),
    "other": _terms("other", "a licence the table does not know the terms of: no openly licensed model; check it",
                    _CLOSED),
}
TERMS["lgpl-3.0-or-later"] = TERMS["lgpl-3.0"]
TERMS["agpl-3.0-or-later"] = TERMS["agpl-3.0"]
for _old in ("2.0", "2.5", "3.0"):  # earlier Creative Commons versions: the same conditions as 4.0's
    for _kind in ("by", "by-sa", "by-nc", "by-nc-sa", "by-nd", "by-nc-nd"):
        TERMS[f"cc-{_kind}-{_old}"] = TERMS[f"cc-{_kind}-4.0"]
TERMS["gfdl"] = TERMS["gfdl-1.3"] = _terms("copyleft", "copyleft (GNU FDL): the model must be under the GFDL",
                                           {"gfdl", "gfdl-1.3"})

_ALIASES = {"psf": "psf-2.0", "python": "psf-2.0", "apache2": "apache-2.0", "apache": "apache-2.0",
            "cc0": "cc0-1.0", "public domain": "public-domain", "publicdomain": "public-domain", "pd": "public-domain",
            "cc-by": "cc-by-4.0", "cc-by-sa": "cc-by-sa-4.0", "cc-by-nc": "cc-by-nc-4.0",
            "cc-by-nc-sa": "cc-by-nc-sa-4.0", "lgpl": "lgpl-3.0", "agpl": "agpl-3.0", "": "unknown"}


def normalize(licence: str | None) -> str:
    """The table's key for a licence as a user wrote it: case, spaces, `-only` and `+` (SPDX) do not matter."""
    s = (licence or "").strip().lower().replace("_", "-").replace(" ", "-")
    s = s.removesuffix("-only")
    if s.endswith("+"):
        s = s[:-1] + "-or-later"
    return _ALIASES.get(s, _ALIASES.get(s.replace("-", " "), s))


def terms(licence: str | None) -> Terms | None:
    """What the table says of a licence; None when it is unknown or not in the table."""
    return TERMS.get(normalize(licence))


def check(source_licences: dict[str, str], model_licence: str, unknown: str = "warn") -> list[dict]:
    """A finding per source whose licence conflicts with (or cannot be checked against) `model_licence`: source,
    licence, model_licence, reason, fix and `blocks` (a conflict, or an unknown licence when `unknown` is block)."""
    model = normalize(model_licence)
    out = []
    for source, lic in sorted(source_licences.items()):
        t = terms(lic)
        if t is None:
            what = "unknown" if normalize(lic) == "unknown" else "not in the licence table (core/licenses.py)"
            out.append({"source": source, "licence": lic, "model_licence": model_licence, "blocks": unknown == "block",
                        "reason": f"its licence is {what}, so the model's licence cannot be checked against it",
                        "fix": f"set the source's licence in data.sources (an SPDX id such as MIT or CC-BY-4.0), or "
                               f"drop the source {source!r}; governance.unknown_license is {unknown}"})
            continue
        if t.allows is None or model in t.allows:
            continue
        want = " or ".join(sorted(t.allows))
        out.append({"source": source, "licence": lic, "model_licence": model_licence, "blocks": True,
                    "reason": t.why,
                    "fix": (f"set governance.license to {want}, " if t.allows - _CLOSED else
                            "mark the model governance.license: proprietary if it is not published openly, ")
                           + f"drop the source {source!r} from data.sources (and `lmwright forget --source {source}` "
                             "to rebuild without it), or override with --force --reason \"...\" (recorded in the "
                             "audit log)"})
    return out


def verdicts(source_licences: dict[str, str], model_licence: str, unknown: str = "warn") -> list[dict]:
    """Every source with its licence, what the table says of it and the verdict (ok, warn, conflict): the model
    card's licence section."""
    found = {f["source"]: f for f in check(source_licences, model_licence, unknown)}
    rows = []
    for source, lic in sorted(source_licences.items()):
        t, f = terms(lic), found.get(source)
        rows.append({"source": source, "licence": lic, "family": t.family if t else "unknown",
                     "terms": t.why if t else "not in the table",
                     "verdict": "ok" if f is None else "conflict" if f["blocks"] else "warn",
                     **({"reason": f["reason"], "fix": f["fix"]} if f else {})})
    return rows


def message(finding: dict) -> str:
    """One finding as a sentence: the source, its licence, the model's licence, why and the fix."""
    return (f"source {finding['source']!r} is licensed {finding['licence']} and the model's licence is "
            f"{finding['model_licence']} (governance.license): {finding['reason']}; fix: {finding['fix']}")


def trained_on(store: Store, run_id: int) -> dict[str, str]:
    """{source name: licence} of every source collected upstream of the stage run `run_id` (the run that
    registered a model), read from the collect runs' recorded spec (`data.sources`), upstream as core/lineage.py
    walks it (each input to the latest run that made it before its reader: the one the pipeline used). A source
    reached through collect runs that labelled it differently (its licence was corrected, while cached stages kept content made before) gets the
    latest label: the licence is a fact about the source, and the latest declaration is what the project knows."""
    from lmwright.core.lineage import graph

    g = graph(store)
    labels: dict[str, tuple[int, str]] = {}  # source -> (collect run, licence), the latest run's
    for run in g.upstream(g.runs[run_id]) if run_id in g.runs else []:
        if run.stage == "collect":
            for src in (run.params or {}).get("data.sources", []):
                name = src.get("name", src.get("kind", "?"))
                labels[name] = max(labels.get(name, (0, "")), (run.id, src.get("license", "unknown")))
    return {name: lic for name, (_, lic) in sorted(labels.items())}


def model_findings(store: Store, run_id: int, governance) -> tuple[dict[str, str], list[dict]]:
    """(the sources that reached the model registered by run `run_id` with their licences, the findings of `check`
    against the spec's `governance` section)."""
    sources = trained_on(store, run_id)
    return sources, check(sources, governance.license, governance.unknown_license)


def gate_checks(store: Store, run_id: int, governance) -> list[dict]:
    """The blocking findings for a registered model, shaped as the promotion gate's failed checks."""
    _, found = model_findings(store, run_id, governance)
    return [{"criterion": f"licence of source {f['source']!r} ({f['licence']}) for a model under {f['model_licence']}",
             "metric": "licence", "value": None, "ci": None, "verdict": "fail", "whole_interval_passes": None,
             "why": f"{f['reason']}; fix: {f['fix']}", "source": "core/licenses.py"} for f in found if f["blocks"]]
