"""PII and secrets: detect spans, redact them with typed placeholders such as `<EMAIL>`.

Types:
- e-mail addresses, also in angle brackets, `mailto:` links and URL-encoded (`%40`);
- phone numbers: international (`+44 20 7946 0958`, `0049 30 901820`, E.164) anywhere, and the national formats
  of 14 countries (`010-8888-6666`, `030 901820`, `06 12 34 56 78`, `(202) 555-0143`, ...) when they are grouped
  the way that country groups them or a phone word precedes them. Candidates come from a cheap regex and are
  validated with `phonenumbers` (Google's libphonenumber, as Microsoft Presidio does);
- IPv4/IPv6 addresses. `ip_scope="public"` (the default, `data.pii.ip_scope`) counts public ones only: loopback,
  private, shared, link-local and documentation addresses identify nobody; `"all"` counts those too. Netmasks,
  multicast groups and 0.0.0.0 never count. A dotted quad that reads as a version (`version 1.2.3.4`, a line
  about releases) needs address evidence: a network word before it, `user@`, `//`, a port or log shape after;
- payment card numbers (Luhn-checked, known issuer prefixes), IBANs (mod-97 checked, registry lengths);
- national ids: US SSN (dashed, or after "SSN" in any spacing) and UK NINO;
- secrets: cloud and service API keys, tokens, JWTs, private-key blocks, `password=...`-style assignments in
  code, env files, JSON and YAML, credentials in URLs, command lines and Authorization headers.

Each candidate a pattern finds must also pass a validator (checksum, library, context), which is what keeps
versions, dates, hashes, UUIDs, ports, netmasks, OIDs, order numbers, money and numbers in code from being
redacted. Used by the clean stage, the server's safety check, the risk evaluation and `lmwright data redact`;
`benchmarks/pii.py` scores it on the labelled sets in `tests/data/pii_*.jsonl`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

IpScope = Literal["public", "all"]


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str
    text: str


# Speed: most patterns start with a character class and check the character before it with a lookbehind of
# fixed width, so the regex engine skips ahead in C instead of trying every position; the rarer ones run only
# on texts that contain one of their literals (see find_pii).

# --- e-mail ----------------------------------------------------------------------------------------------------
EMAIL = re.compile(r"(?<![\w.+%-])[^\W_][\w.%+-]*(?:@|%40)(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-])")
# `logo@2x.png` names an image, not a mailbox; a UUID or long hex local part is a Message-ID
_ASSET = re.compile(r"(?i)^\d+(?:\.\d+)?x\.|\.(?:png|jpe?g|gif|svg|webp|ico|bmp|avif|tiff?)$")
_MACHINE_LOCAL = re.compile(r"(?i)[0-9a-f.-]{20,}")

# --- phone numbers ---------------------------------------------------------------------------------------------
# groups of digits, one separator between them (or none after a bracketed area code), optionally after a +
# (not after a latin letter, a dot, a path, a thousands comma or a time's colon; CJK text glues numbers to words)
PHONE = re.compile(
    r"[+(\d](?<![A-Za-z0-9_+./@#$%-].)(?<!\d[,:].)"
    r"(?:(?<=\+) ?(?:\(\d{1,5}\)|\d{1,15})|(?<=\()\d{1,5}\)|(?<=\d)\d{0,14})"
    r"(?:(?:[ .\-/]|(?<=\)))(?:\(\d{1,5}\)|\d{1,15})){0,7}(?![A-Za-z0-9_]|[.\-/:]\d)"
)
# national numbers are tried in these regions; each costs a parse, so the list is short and the regex gates it
PHONE_REGIONS = ("US", "GB", "DE", "FR", "KR", "JP", "CN", "IN", "BR", "AU", "IT", "ES", "NL", "MX")
# a phone word before a number lets a national number through without the country's grouping
_PHONE_WORDS = re.compile(
    r"(?i)\b(?:tel|t[eé]l[eé]phone|telefon|tel[eé]fono|phone|ph|mobile?|mob|cell(?:phone)?|handy|portable|fax|"
    r"call(?:ed|ing)?|dial|ring|sms|whatsapp|contact|hotline|helpline|callback|fone|celular|ligue|llame|"
    r"appelez|anrufen)\b|電話|电话|手机|携帯|전화|번호|휴대폰")
# a number labelled as an order, invoice, account, ... number is that, not a phone number
_NOT_PHONE_WORDS = re.compile(r"(?i)\b(?:order|invoice|inv|tracking|ticket|case|ref(?:erence)?|id|serial|sku|po|"
                               r"account|acct|iban|card|isbn|build|version|zip|postal|postcode|plz)\b\W{0,3}#?$")
# North-American shapes, accepted as before even with made-up area codes (555, 123)
_NANP = re.compile(r"(?:1[ -])?(?:\(\d{3}\) ?\d{3}[ .-]|\d{3}([.-])\d{3}\1)\d{4}")
# precompiled: phonenumbers compiles so many patterns that re's own cache would keep evicting these
_DIGIT_RUN, _CODE_BEFORE, _ZIP4 = re.compile(r"\d+"), re.compile(r"[A-Za-z]*\d\w* $"), re.compile(r"\d{5}-\d{4}")
_IPV4_START, _SSN_SHAPE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?![.\d])"), re.compile(r"\d{3}-\d{2}-\d{4}")
# 2024-03-05, 05/03/2024, 2024.03.05: never a phone number, never a version
_DATE = re.compile(r"\d{4}([-./])\d{1,2}\1\d{1,2}|\d{1,2}([-./])\d{1,2}\2\d{2,4}")

# --- IP addresses ----------------------------------------------------------------------------------------------
IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\w.]?\d)(?!-\w)")  # not 1.2.3.4.5 or -beta
IPV6 = re.compile(r"[0-9A-Fa-f:](?<![\w:].)(?:(?<=[0-9A-Fa-f])[0-9A-Fa-f]{0,3}:(?:[0-9A-Fa-f]{1,4}:){1,6}"
                  r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4})*|(?<=:):1)(?!\w|:[\w:])")  # a colon after it: punctuation
# (::1 matches only for ip_scope="all")
# right before the quad, these make it a version (or an OID) whatever else the line says
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bv|\boids?|\bver\.?|\bversions?|\breleases?|\bpython|\bbuild|\bfirmware|\bfw|\bsections?|§|"
    r"\brev(?:ision)?|\bassembly|[=~!<>]=|\breleases?/)\W{0,4}$")
# network words up to 40 characters before, or a user@ / URL / bracket right before: an address
_ADDRESS_WORDS = re.compile(
    r"(?i)\b(?:ips?|ipv4|addr(?:ess(?:es)?)?|inet|hosts?|servers?|clients?|peers?|remote|src|dst|destination|"
    r"gateway|gw|router|dns|nameservers?|resolvers?|prox(?:y|ies)|upstream|endpoint|egress|ingress|ssh|"
    r"ping(?:ed)?|traceroute|tracert|mtr|dig|nslookup|whois|nc|ncat|nmap|telnet|curl|wget|ban(?:ned)?|"
    r"block(?:ed)?|allow(?:ed)?|deny|denied|drop(?:ped)?|firewall|iptables|ufw|connect\w*|listen\w*|bind|vpn|"
    r"resolve[sd]?|from)\b")
# "upgrade from 1.2.3.4": there "from" introduces a version
_FROM_VERSION = re.compile(r"(?i)\b(?:upgrad|updat|bump|migrat|downgrad|switch|chang)\w*(?:\s+\S+){0,2}\s+from\s*$")
# after the quad: a port, a prefix length, sshd's "port 22", an access log's "- user [", a closing bracket
_ADDRESS_AFTER = re.compile(r":\d{1,5}(?!\d)|/\d{1,2}(?!\d)| port\b| - \S+ \[|\]")
# within 80 characters: words and x.y.z tokens of release notes, which make an unmarked quad a version
_VERSION_WORDS = re.compile(
    r"(?i)\b(?:versions?|releases?d?|upgraded?|updated?|bump(?:s|ed)?|changelog|firmware|packages?|install(?:ed)?|"
    r"tag(?:ged)?|builds?|patch(?:ed)?|sdk|librar(?:y|ies)|dependenc(?:y|ies)|sections?|chapters?|rfc|"
    r"compatible|deprecated)\b")
_VERSIONISH = re.compile(r"(?<![\w.])v?\d+(?:\.\d+){2,}(?:[a-z+-]\w*)?(?![\w.])|(?<![\w.])\d+\.\d+[a-z]\w*")

# --- cards, IBANs, national ids ----------------------------------------------------------------------------------
CARD = re.compile(r"\d(?<![\w-]\d)(?:[ -]?\d){12,18}(?![\w-])")
# issuer prefix and the lengths it issues: a 15-digit IMEI starting 35 is not a JCB card
CARD_ISSUERS = [(re.compile(p), lengths) for p, lengths in [
    (r"4", (13, 16, 19)), (r"5[1-5]|2(?:2[2-9]|[3-6]|7[01]|720)", (16,)), (r"3[47]", (15,)),  # Visa, MC, Amex
    (r"6(?:011|5|4[4-9])", (16, 17, 18, 19)), (r"35", (16, 17, 18, 19)), (r"3(?:0[0-5]|[689])", (14, 15, 16, 19)),
    (r"62", (16, 17, 18, 19)), (r"6759|676[1-3]|6304|50[12]", tuple(range(12, 20)))]]  # UnionPay, Maestro
IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9].)[A-Z]\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
IBAN_LENGTHS = {  # the SWIFT IBAN registry
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30}
SSN = re.compile(r"\d(?<![\w-]\d)\d\d(?<!000|666)(?<!9\d\d)-\d\d(?<!00)-\d{4}(?<!0000)(?![\w-])")
# after the word "SSN" the number may also be spaced or unseparated
SSN_AFTER_WORD = re.compile(r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\W{0,4}"
                            r"(?P<value>(?!000|666|9\d\d)\d{3}([ -]?)(?!00)\d{2}\2(?!0000)\d{4})(?![\w-])")
# prefixes BG, GB, KN, NK, NT, TN and ZZ are never allocated, nor is a first letter D, F, I, Q, U or V (so HMRC's
# specimen QQ 12 34 56 C is left alone)
NINO = re.compile(r"[A-CEGHJ-PR-TW-Z](?<![A-Za-z0-9].)[A-CEGHJ-NPR-TW-Z](?<!BG|GB|KN|NK|NT|TN|ZZ)"
                  r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])")

# --- secrets ---------------------------------------------------------------------------------------------------
# (pattern, literals one of which the text must contain before the pattern is run at all)
SECRETS = [(re.compile(p), needles) for p, needles in [
    # bounded: a text of BEGIN lines with no END must not cost a scan to its end per BEGIN
    (r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]{1,8192}?-----END (?:[A-Z]+ )*PRIVATE KEY-----",
     ("PRIVATE KEY",)),
    (r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])", ("AKIA", "ASIA")),  # AWS access key id
    (r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9])", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{40,255}", ("github_pat_",)),  # GitHub
    (r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}", ("xox",)),  # Slack
    (r"(?<![A-Za-z0-9])sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}", ("sk-",)),  # OpenAI / Anthropic style
    (r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", ("AIza",)),  # Google API key
    (r"(?<![A-Za-z0-9])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}", ("_live_", "_test_")),  # Stripe
    (r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", ("eyJ",)),  # JWT
]]
# `password = "..."`, `DB_PASSWORD=...`, `"api_key": "..."`: the value is redacted, the key is kept
ASSIGNED_SECRET = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?P<key>api[_-]?key|apikey|secret(?:[_-]?access)?[_-]?key|client[_-]?secret|secret|"
    r"(?:access|auth|refresh|api)[_-]?token|token|(?-i:[A-Z]{2,8})?(?:password|passwd)|pwd|private[_-]?key)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<value>[^\s\"'`]{8,})")
# a password given in prose, in several languages: "the password is X", "WLAN-Passwort lautet: X", "mot de passe : X"
PROSE_PASSWORD = re.compile(
    r"(?i)(?:\b(?:password|passwort|kennwort|mot de passe|contrase[ñn]a|senha|wachtwoord|passcode)\b|パスワード|"
    r"비밀번호|密码|密碼)(?:\s+(?:is|was|lautet|ist|est|es|é|era)(?:\s*[:=：])?|\s*[:=：])\s*[\"'“«]?"
    r"(?P<value>[^\s\"'`”»]{6,})")
_PROSE_PASSWORD_WORDS = ("passw", "kennwort", "mot de passe", "contrase", "senha", "wachtwoord", "passcode",
                         "パスワード", "비밀번호", "密码", "密碼")
# the password of scheme://user:password@host
# (the scheme may not start inside a run of scheme characters: `a-a-a-...://` would be rescanned from each `a`)
URL_CREDENTIAL = re.compile(r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://[^\s:/@]+:(?P<value>[^\s/@]+)@")
# passwords given on the command line: mysql -pX, redis-cli -a X, curl -u user:X, sshpass -p X
COMMAND_SECRET = re.compile(
    r"\bmysql(?:dump|admin)?\b[^\n|;]{0,200}?\s-p(?P<a>[^\s-]\S{5,})|\bredis-cli\b[^\n|;]{0,200}?\s-a\s+(?P<b>\S{6,})"
    r"|\bcurl\b[^\n|;]{0,200}?\s(?:-u|--user)\s+[^\s:]+:(?P<c>\S{6,})|\bsshpass\s+-p\s*(?P<d>\S{6,})")  # bounded
AUTH_HEADER = re.compile(r"(?i)\bauthorization\s*[:=]\s*[\"']?(?:bearer|basic|token)\s+"
                         r"(?P<value>[A-Za-z0-9._~+/=-]{8,})")
_NOT_SECRETS = {"none", "null", "true", "false", "required", "optional", "redacted", "changeme", "password",
                "secret", "example", "undefined", "placeholder"}

PLACEHOLDER = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>", "credit_card": "<CREDIT_CARD>",
               "iban": "<IBAN>", "national_id": "<NATIONAL_ID>", "secret": "<SECRET>"}


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


def _email_ok(text: str, m: re.Match) -> bool:
    local, domain = re.split(r"@|%40", m.group(), maxsplit=1)
    if _ASSET.search(domain) or _MACHINE_LOCAL.fullmatch(local):
        return False
    if re.match(r":[\w~/]", text[m.end() : m.end() + 2]):  # git@github.com:org/repo is an ssh login
        return False
    scheme = text.rfind("://", max(0, m.start() - 300), m.start())  # scheme://user:password@host is no mailbox
    return scheme < 0 or re.search(r"[\s/]", text[scheme + 3 : m.start()]) is not None


def _ip_ok(text: str, scope: IpScope) -> bool:
    """A valid address in scope that is not a netmask (ones then zeros: 255.255.255.0, 0.0.0.0) or a multicast group."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    inverted = int(addr) ^ ((1 << addr.max_prefixlen) - 1)
    if inverted & (inverted + 1) == 0 or addr.is_multicast:
        return False
    return scope == "all" or addr.is_global


def _ipv4_ok(text: str, start: int, end: int) -> bool:
    """Versions are written like addresses (1.2.3.4): decide by the words and tokens around the quad. Address
    evidence must be on the quad's line; version evidence may be on the lines around it (a list of versions)."""
    near_before, near_after = text[max(0, start - 80) : start], text[end : end + 80]
    before, after = near_before[near_before.rfind("\n") + 1 :], near_after.split("\n", 1)[0]
    if _VERSION_BEFORE.search(before[-16:]):
        return False
    tag = re.search(r"([A-Za-z][\w.-]*):$", before)  # image:1.2.3.4 is a tag unless the key is a network word
    if tag and not _ADDRESS_WORDS.fullmatch(tag.group(1)):
        return False
    words = _ADDRESS_WORDS.search(before[-40:]) and not _FROM_VERSION.search(before)
    if words or before.endswith(("@", "//", "[")) or _ADDRESS_AFTER.match(after):
        return True
    if text[start:end].endswith(".0"):
        return False  # x.y.z.0 is a network or a version, rarely a host
    release_words = bool(_VERSION_WORDS.search(near_before) or _VERSION_WORDS.search(near_after))
    versions = any(  # other x.y.z nearby that are neither addresses nor dates: a list of versions
        not (len(p) == 4 and all(x.isdigit() and int(x) < 256 for x in p)) and not _DATE.fullmatch(tok.group())
        for tok in _VERSIONISH.finditer(near_before + " " + near_after) for p in [tok.group().split(".")])
    if any(len(o) > 1 for o in text[start:end].split(".")):  # versions seldom have parts of 2-3 digits
        return not (release_words and versions)
    return not (release_words or versions)


def _phone_ok(cand: str, before: str, trimmed: bool = False) -> bool:
    groups = _DIGIT_RUN.findall(cand)
    digits = "".join(groups)
    intl = cand.startswith("+") or (cand[:2] == "00" and cand[2:3] not in ("0", ""))  # no country code starts with 0
    if not 7 <= len(digits) - (2 if intl and cand.startswith("00") else 0) <= 15 or _DATE.fullmatch(cand):
        return False
    context = bool(_PHONE_WORDS.search(before[-30:]))
    if not context and (_NOT_PHONE_WORDS.search(before[-16:]) or _CODE_BEFORE.search(before)
                        or _ZIP4.fullmatch(cand)):  # order=0001 7369 7111; 1Z 999 AA1 01 2345; ZIP+4
        return False
    national_groups = groups[1:] if intl else groups
    if "." in cand and (len(groups) < 3 or min(map(len, national_groups)) < 2  # 3.14159, 10.0.19041.1, 1.2.3.4
                        or _IPV4_START.match(cand)):  # an IPv4 address (or network)
        return False
    if intl:  # the country code is evidence enough: the length need only be possible for that country
        try:
            return phonenumbers.is_possible_number(phonenumbers.parse(cand, "DE" if cand.startswith("00") else None))
        except phonenumbers.NumberParseException:
            return False
    if _NANP.fullmatch(cand) and len(set(digits)) > 2:  # (202) 555-0143, 202-555-0143: also made-up area codes
        return True
    # ISBN 978-3-16-148410-0, 1 234 567 (money): national numbers have no 1-digit group but a NANP trunk "1"
    if any(len(g) == 1 for g in groups[1:]) or (len(groups[0]) == 1 and groups[0] != "1") or len(digits) > 13:
        return False
    if (len(groups) == 1 or trimmed) and not context:  # a bare digit run is an id, a timestamp or a count
        return False
    if _SSN_SHAPE.fullmatch(cand):  # 123-45-6789 is a national id
        return False
    # a national number must also be grouped the way its country writes numbers, unless a phone word precedes it
    leniency = Leniency.VALID if context else Leniency.STRICT_GROUPING
    for region in PHONE_REGIONS:
        if len(digits) not in _region_lengths(region):  # skip a parse that cannot succeed
            continue
        try:
            number = phonenumbers.parse(cand, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        if _DIGIT_RUN.findall(national) == groups:  # written exactly as the library writes it: no matcher needed
            return True
        if any(m.start == 0 and m.end == len(cand) for m in PhoneNumberMatcher(cand, region, leniency=leniency)):
            return True
    return False


@functools.cache
def _region_lengths(region: str) -> frozenset[int]:
    """How many digits a national number of the region has, with or without its trunk prefix."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    lengths = meta.general_desc.possible_length
    return frozenset(lengths) | frozenset(n + len(meta.national_prefix or "") for n in lengths)


def _secret_value_ok(value: str, in_url: bool = False) -> bool:
    """An assigned secret looks random: a digit, a symbol or mixed case. Not a plain word, a placeholder
    (`<...>`, `${...}`, `YOUR_KEY`), a mask (`****`) or code (`os.environ[...]`, `settings.KEY`)."""
    if value.lower() in _NOT_SECRETS or value.startswith(("<", "${", "{{", "%(", "$")):
        return False
    if re.fullmatch(r"[*xX•.#-]+|[A-Z][A-Z_]*|(?:~|\.{1,2})?(?:/[a-z0-9_.-]+)+/?", value):
        return False  # masked, YOUR_API_KEY, a path
    if not in_url and re.fullmatch(r"[A-Za-z_]+(?:\.[A-Za-z_]+)+", value):  # settings.API_KEY (no code in a URL)
        return False
    if re.match(r"[A-Za-z_][\w.]*[(\[]", value):  # os.environ["KEY"], getpass.getpass(...)
        return False
    # an underscore alone is no sign of randomness: `api_key` as a value is a variable's name
    return bool(re.search(r"\d|[^A-Za-z0-9_]", value)) or (value != value.lower() and value != value.upper())


def _card_ok(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return any(p.match(digits) and len(digits) in lengths for p, lengths in CARD_ISSUERS) and luhn_ok(digits)


def find_pii(text: str, types: list[str] | tuple[str, ...] | None = None, *,
             ip_scope: IpScope = "public") -> list[Span]:
    """Non-overlapping PII spans in text order (of overlapping candidates the longest wins, then the first
    found in the order below: secrets and e-mail before numbers). `types`: the kinds to look for (default all);
    `ip_scope`: "public" counts public addresses only, "all" also private, loopback and documentation ones."""
    want = set(types or PLACEHOLDER)
    cands: list[Span] = []

    def add(kind: str, m: re.Match, group: int | str = 0, trailing: str = ",;)}]") -> None:
        value = m.group(group)
        stripped = value.rstrip(trailing) if group else value  # `{password: x}`: the bracket is not the value
        cands.append(Span(m.start(group), m.start(group) + len(stripped), kind, stripped))

    low = text.lower()  # the rarer patterns run only on texts that contain one of their literals
    if "secret" in want:
        for pat, needles in SECRETS:
            if any(n in text for n in needles):
                for m in pat.finditer(text):
                    add("secret", m)
        for pat, needles in ((ASSIGNED_SECRET, ("key", "secret", "token", "passw", "pwd")), (URL_CREDENTIAL, ("://",)),
                             (AUTH_HEADER, ("authorization",)), (PROSE_PASSWORD, _PROSE_PASSWORD_WORDS)):
            if any(n in low for n in needles):
                for m in pat.finditer(text):
                    value = m.group("value").rstrip(",;)}]")
                    # a bare `secret:` / `token:` also names things (secret: db-credentials): want a digit too
                    bare = (m.groupdict().get("key") or "").lower() in ("secret", "token")
                    prose = pat is PROSE_PASSWORD
                    if prose:  # in a sentence a final full stop is punctuation; "is required." is no password
                        value = value.rstrip(".,;:)}]")
                        ok = _secret_value_ok(value) and (bool(re.search(r"\d", value)) or (
                            value != value.lower() and bool(re.search(r"[^A-Za-z0-9]", value))))
                    else:
                        ok = _secret_value_ok(value, in_url=pat is URL_CREDENTIAL)
                    if ok and not (bare and not re.search(r"\d", value)):
                        add("secret", m, "value", ".,;:)}]" if prose else ",;)}]")
        if any(n in text for n in ("mysql", "redis-cli", "curl", "sshpass")):
            for m in COMMAND_SECRET.finditer(text):
                group = next(g for g in "abcd" if m.group(g))
                if _secret_value_ok(m.group(group)):
                    add("secret", m, group)
    if "email" in want and ("@" in text or "%40" in text):
        for m in EMAIL.finditer(text):
            if _email_ok(text, m):
                add("email", m)
    if "iban" in want:
        for m in IBAN.finditer(text):
            if iban_ok(m.group()):
                add("iban", m)
    if "credit_card" in want:
        for m in CARD.finditer(text):  # digits after "DE60 " are the rest of an IBAN
            if _card_ok(m.group()) and not re.search(r"[A-Z]{2}\d{2} ?$", text[max(0, m.start() - 5) : m.start()]):
                add("credit_card", m)
    if "national_id" in want:
        for pat in (SSN, NINO):
            for m in pat.finditer(text):
                add("national_id", m)
        if "ssn" in low or "social security" in low:
            for m in SSN_AFTER_WORD.finditer(text):
                add("national_id", m, "value")
    if "phone" in want:
        for m in PHONE.finditer(text):
            if m.end() - m.start() < 7:  # fewer than 7 digits: most matches end here
                continue
            cand, before = m.group(), text[max(0, m.start() - 30) : m.start()]
            while True:  # "tel. 030 901820 24 hours": drop trailing groups (after a phone word only)
                if _phone_ok(cand, before, trimmed=cand != m.group()):
                    cands.append(Span(m.start(), m.start() + len(cand), "phone", cand))
                    break
                cut = cand.rfind(" ")
                if cut < 0 or sum(c.isdigit() for c in cand[:cut]) < 7:
                    break
                cand = cand[:cut]
    if "ip" in want:
        for m in IPV4.finditer(text):
            if _ip_ok(m.group(), ip_scope) and _ipv4_ok(text, m.start(), m.end()):
                add("ip", m)
        for m in IPV6.finditer(text):
            if _ip_ok(m.group(), ip_scope):
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


def redact(text: str, types: list[str] | tuple[str, ...] | None = None, *,
           ip_scope: IpScope = "public") -> tuple[str, Counter]:
    """The text with each PII span replaced by its placeholder, and the count per type."""
    spans = find_pii(text, types, ip_scope=ip_scope)
    out, last = [], 0
    for s in spans:
        out += [text[last : s.start], PLACEHOLDER[s.type]]
        last = s.end
    out.append(text[last:])
    return "".join(out), Counter(s.type for s in spans)
