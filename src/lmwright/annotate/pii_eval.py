"""Human-labelled PII spans as an evaluation set for the PII detector (`data/filters/pii.py`): the detector's
precision, recall and F1 against the final span labels, overall (micro) and per kind, for exact spans and for
overlapping ones, with Wilson 95% intervals (a hand-labelled set has few spans, so the interval matters).

Label mapping, from a human span label (case-insensitive; spaces and hyphens read as `_`) to the detector's kind:

| detector kind | human labels |
|---|---|
| email | email, e_mail, email_address, mail |
| phone | phone, phone_number, telephone, tel, mobile, fax |
| ip | ip, ip_address, ipv4, ipv6 |
| credit_card | credit_card, card, card_number, payment_card, cc |
| iban | iban, bank_account |
| national_id | national_id, ssn, nino, national_insurance_number |
| secret | secret, password, api_key, token, credential, private_key |

`label_map` adds to or overrides it. Other labels (person, address, ...) name kinds the detector does not look
for: their spans are counted under `unmapped` and stay out of the scores. Only the kinds the humans label are
scored (those of the task's labels when a task is given, else those seen), so a detector span of another kind
(a secret, in a project that labels e-mails and phones only) is counted under `other_kinds`, not as a false alarm.

Matching: *exact* needs the same start, end and kind; *overlap* pairs each human span with at most one detected
span of its kind that shares a character with it (one-to-one, in text order).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from lmwright.annotate.tasks import AnnotationError, Task, check_value
from lmwright.data.filters.pii import IpScope, find_pii

PII_LABELS = {
    "email": ("email", "e_mail", "email_address", "mail"),
    "phone": ("phone", "phone_number", "telephone", "tel", "mobile", "fax"),
    "ip": ("ip", "ip_address", "ipv4", "ipv6"),
    "credit_card": ("credit_card", "card", "card_number", "payment_card", "cc"),
    "iban": ("iban", "bank_account"),
    "national_id": ("national_id", "ssn", "nino", "national_insurance_number"),
    "secret": ("secret", "password", "api_key", "token", "credential", "private_key"),
}
ALIASES = {alias: kind for kind, names in PII_LABELS.items() for alias in names}
Z95 = 1.959963984540054


def detector_kind(label: str, label_map: dict[str, str] | None = None) -> str | None:
    """The detector's kind for a human span label, or None when the detector does not look for it."""
    norm = re.sub(r"[\s-]+", "_", label.strip().lower())
    extra = label_map or {}
    return extra.get(label, extra.get(norm, ALIASES.get(norm)))


def wilson(k: int, n: int) -> list[float] | None:
    """Wilson score 95% interval of a proportion k/n; None when n is 0."""
    if n == 0:
        return None
    p, z2 = k / n, Z95 * Z95
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [round(max(0.0, center - half), 4), round(min(1.0, center + half), 4)]


def _scores(tp: int, n_detected: int, n_human: int) -> dict:
    precision = tp / n_detected if n_detected else None
    recall = tp / n_human if n_human else None
    f1 = (2 * precision * recall / (precision + recall) if precision and recall else
          (0.0 if precision is not None and recall is not None else None))
    return {"tp": tp, "fp": n_detected - tp, "fn": n_human - tp, "precision": precision, "recall": recall,
            "f1": f1, "precision_ci": wilson(tp, n_detected), "recall_ci": wilson(tp, n_human)}


def _overlap_matches(human: list[tuple[int, int]], found: list[tuple[int, int]]) -> set[int]:
    """Indices of human spans paired one-to-one with an overlapping detected span (exact pairs first)."""
    free = set(range(len(found)))
    matched = set()
    for i, h in enumerate(human):
        if h in found and found.index(h) in free:
            free.discard(found.index(h))
            matched.add(i)
    for i, (s, e) in enumerate(human):
        if i in matched:
            continue
        j = next((j for j in sorted(free) if found[j][0] < e and s < found[j][1]), None)
        if j is not None:
            free.discard(j)
            matched.add(i)
    return matched


def _span(s: Any) -> tuple[int, int, str]:
    """(start, end, kind) of a detector span: a `Span`, a dict with start/end/type or a (start, end, kind)."""
    if isinstance(s, dict):
        return int(s["start"]), int(s["end"]), str(s.get("type", s.get("label")))
    if isinstance(s, (tuple, list)):
        return int(s[0]), int(s[1]), str(s[2])
    return int(s.start), int(s.end), str(s.type)


def evaluate_pii(records: Iterable[dict], task: Task | None = None,
                 detect: Callable[[str], Iterable[Any]] | None = None, label_map: dict[str, str] | None = None,
                 ip_scope: IpScope = "public", examples: int = 10) -> dict:
    """Score the PII detector (`detect(text)`, default `find_pii` of the scored kinds with `ip_scope`) against the
    final span labels of `records`. Records without a final label are counted (`no_final`), not scored."""
    items, no_final, unmapped = [], 0, Counter()
    for rec in records:
        final, data = rec.get("final"), rec.get("data") or {}
        if not final:
            no_final += 1
            continue
        where = f"item {rec.get('key')!r}: final"
        value = check_value(task, final.get("value"), data, where) if task else final.get("value")
        spans = value.get("spans") if isinstance(value, dict) else None
        text = data.get("text")
        if not isinstance(spans, list) or not isinstance(text, str):
            raise AnnotationError(f"{where}: a span answer over the item's text is needed to evaluate PII "
                                  f"(got {value!r})")
        human = []
        for s in spans:
            kind = detector_kind(s["label"], label_map)
            if kind is None:
                unmapped[s["label"]] += 1
            else:
                human.append((s["start"], s["end"], kind))
        items.append((rec.get("key"), text, sorted(set(human))))
    if task is not None:
        kinds = {k for k in (detector_kind(x, label_map) for x in task.labels) if k}
    else:
        kinds = {k for _, _, human in items for _, _, k in human}
    if detect is None:
        def detect(text: str) -> list:
            return find_pii(text, sorted(kinds), ip_scope=ip_scope)

    per: dict[str, Counter] = {k: Counter() for k in sorted(kinds)}
    other, misses, alarms = Counter(), [], []
    for key, text, human in items:
        found = []
        for s in detect(text) if kinds else ():
            start, end, kind = _span(s)
            if kind in kinds:
                found.append((start, end, kind))
            else:
                other[kind] += 1
        found = sorted(set(found))
        for kind in sorted(kinds):
            h = [(s, e) for s, e, k in human if k == kind]
            f = [(s, e) for s, e, k in found if k == kind]
            exact = set(h) & set(f)
            c = per[kind]
            c["human"] += len(h)
            c["detected"] += len(f)
            c["exact"] += len(exact)
            c["overlap"] += len(_overlap_matches(h, f))
            misses += [{"key": key, "kind": kind, "start": s, "end": e, "text": text[s:e]}
                       for s, e in h if (s, e) not in exact]
            alarms += [{"key": key, "kind": kind, "start": s, "end": e, "text": text[s:e]}
                       for s, e in f if (s, e) not in exact]
    total = sum(per.values(), Counter())
    return {
        "items": len(items), "no_final": no_final, "kinds": sorted(kinds),
        "human_spans": total["human"], "detected_spans": total["detected"],
        "exact": _scores(total["exact"], total["detected"], total["human"]),
        "overlap": _scores(total["overlap"], total["detected"], total["human"]),
        "per_kind": {k: {"human": c["human"], "detected": c["detected"],
                         "exact": _scores(c["exact"], c["detected"], c["human"]),
                         "overlap": _scores(c["overlap"], c["detected"], c["human"])} for k, c in per.items()},
        "unmapped": dict(sorted(unmapped.items())), "other_kinds": dict(sorted(other.items())),
        "misses": misses[:examples], "false_alarms": alarms[:examples],
    }
