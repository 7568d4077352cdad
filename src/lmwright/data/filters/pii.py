"""PII and secrets: detect spans, redact them with typed placeholders such as `<EMAIL>`.

Types: e-mail addresses, phone numbers (international and North-American formats), IPv4/IPv6 addresses
(public ones: loopback, private and documentation ranges identify nobody), payment card numbers (Luhn-checked,
known issuer prefixes), IBANs (mod-97 checked), national-id-like numbers (US SSN, UK NINO) and secrets (cloud
and service API keys, tokens, JWTs, private-key blocks, `password=...`-style assignments).

Each candidate a pattern finds must also pass a validator, which is what keeps version numbers, dates,
hashes, UUIDs and numbers in code from being redacted.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str
    text: str


EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,4}"  # +44 20 7946 0958, +49-30-901820
    r"|\+\d{8,14}"  # +442079460958
    r"|\(\d{3}\)[ ]?\d{3}[ .-]\d{4}"  # (202) 555-0143
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 202-555-0143
    r")(?![\w.-]?\d)"
)
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]?\d)(?!-\w)")  # not 1.2.3.4-beta
_VERSION_CONTEXT = re.compile(r"(?i)(?:\bv|version|release|python|build)\s*$")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4})*(?![\w:])")
CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
NINO = re.compile(r"(?<![A-Za-z0-9])(?![DFIQUV])[A-CEGHJ-PR-TW-Z](?![DFIQUVO])[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
                  r"(?![A-Za-z0-9])")
SECRETS = [
    re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]+?-----END (?:[A-Z]+ )*PRIVATE KEY-----"),
    re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])"),  # AWS access key id
    re.compile(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9])"),  # GitHub
    re.compile(r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{40,255}"),
    re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}"),  # Slack
    re.compile(r"(?<![A-Za-z0-9])sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"),  # OpenAI / Anthropic style
    re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),  # Google API key
    re.compile(r"(?<![A-Za-z0-9])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),  # Stripe
    re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
]
# `password = "..."`-style assignments: the value is redacted, the key is kept
ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|password|passwd)"
    r"\s*[:=]\s*[\"']?(?P<value>[^\s\"']{8,})"
)
IBAN_LENGTHS = {"AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27, "GB": 22,
                "GR": 27, "HU": 28, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24,
                "SE": 24, "SK": 24, "SI": 19, "HR": 21, "BG": 22, "EE": 20, "LT": 20, "LV": 21, "IS": 26, "LI": 21,
                "MT": 31, "CY": 28, "TR": 26, "SA": 24, "AE": 23, "IL": 23, "BR": 29, "MC": 27, "SM": 27}
CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|6(?:011|5|4[4-9])|35|3(?:0[0-5]|[68]))")
PLACEHOLDER = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>", "credit_card": "<CREDIT_CARD>",
               "iban": "<IBAN>", "national_id": "<NATIONAL_ID>", "secret": "<SECRET>"}
_DATE_LIKE = re.compile(r"^\d{4}[.-]\d{2}[.-]\d{2}$|^\d{2}[.-]\d{2}[.-]\d{4}$")


def luhn_ok(digits: str) -> bool:
    total, odd = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if odd:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        odd = not odd
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


_IP_CONTEXT = re.compile(r"(?i)\b(?:ip|ips|address|addr|host|server|from|client|peer|dns|connect\w*|via)\b")


def _ip_ok(text: str) -> bool:
    """A public address that is not a netmask (all ones then all zeros, e.g. 255.255.255.0)."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    bits = int(addr)
    inverted = bits ^ ((1 << addr.max_prefixlen) - 1)
    is_mask = inverted & (inverted + 1) == 0
    return addr.is_global and not is_mask


def _ipv4_ok(text: str, before: str) -> bool:
    """Dotted quads of single digits (3.1.1.6) are usually versions: they need an address word nearby."""
    if not _ip_ok(text) or _VERSION_CONTEXT.search(before[-12:]):
        return False
    return any(len(o) > 1 for o in text.split(".")) or bool(_IP_CONTEXT.search(before))


def _phone_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    if text.startswith("+") and digits.startswith("0"):  # no country code starts with 0
        return False
    return 7 <= len(digits) <= 15 and not _DATE_LIKE.match(text) and len(set(digits)) > 2


def _secret_value_ok(value: str) -> bool:
    """An assigned secret looks random: a digit, a symbol or mixed case — not a plain word such as 'password'."""
    if value.lower() in {"none", "null", "true", "false", "required", "optional"}:
        return False
    return bool(re.search(r"\d|[^A-Za-z0-9]", value)) or (value != value.lower() and value != value.upper())


def _card_ok(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and bool(CARD_PREFIX.match(digits)) and luhn_ok(digits)


def find_pii(text: str, types: list[str] | tuple[str, ...] | None = None) -> list[Span]:
    """Non-overlapping PII spans in text order (of overlapping candidates the longest wins)."""
    want = set(types or PLACEHOLDER)
    cands: list[Span] = []

    def add(kind: str, m: re.Match, group: int | str = 0) -> None:
        if kind in want:
            cands.append(Span(m.start(group), m.end(group), kind, m.group(group)))

    for m in EMAIL.finditer(text):
        add("email", m)
    for pat in SECRETS:
        for m in pat.finditer(text):
            add("secret", m)
    for m in ASSIGNED_SECRET.finditer(text):
        if _secret_value_ok(m.group("value")):
            add("secret", m, "value")
    for m in IBAN.finditer(text):
        if iban_ok(m.group()):
            add("iban", m)
    for m in CARD.finditer(text):
        if _card_ok(m.group()):
            add("credit_card", m)
    for pat in (SSN, NINO):
        for m in pat.finditer(text):
            add("national_id", m)
    for m in PHONE.finditer(text):
        if _phone_ok(m.group()):
            add("phone", m)
    for m in IPV4.finditer(text):
        if _ipv4_ok(m.group(), text[max(0, m.start() - 40) : m.start()]):
            add("ip", m)
    for m in IPV6.finditer(text):
        if m.group().count(":") >= 2 and _ip_ok(m.group()):
            add("ip", m)
    cands.sort(key=lambda s: (s.start, -(s.end - s.start)))
    spans: list[Span] = []
    for s in cands:
        if spans and s.start < spans[-1].end:
            if s.end - s.start > spans[-1].end - spans[-1].start:
                spans[-1] = s
            continue
        spans.append(s)
    return spans


def redact(text: str, types: list[str] | tuple[str, ...] | None = None) -> tuple[str, Counter]:
    """The text with each PII span replaced by its placeholder, and the count per type."""
    spans = find_pii(text, types)
    out, last = [], 0
    for s in spans:
        out += [text[last : s.start], PLACEHOLDER[s.type]]
        last = s.end
    out.append(text[last:])
    return "".join(out), Counter(s.type for s in spans)
