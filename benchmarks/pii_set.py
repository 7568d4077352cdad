"""Builds `tests/data/pii_wild.jsonl`: a labelled set of PII and look-alikes in formats found in the wild.

Each line comes from a template in the style of logs (nginx/apache access logs, syslog, sshd, firewalls),
commands, URLs, CSV rows, JSON/YAML configs, tickets, e-mail headers and prose, filled with values from
generators of real-world formats: phone numbers of many countries in their national, international and E.164
formats (from the `phonenumbers` metadata), public and non-public IPv4/IPv6 addresses (`ipaddress` decides
which), e-mail addresses in the shapes they take in headers and links, Luhn-valid card numbers of the major
issuers, mod-97-valid IBANs of many countries (structures from the SWIFT IBAN registry), US SSNs, UK NINOs and
secrets (cloud and service keys, tokens, JWTs, private keys, passwords in configs, URLs and commands), and
look-alikes that are not PII (versions, dates, times, hashes, UUIDs, ports, netmasks, OIDs, timestamps,
order/invoice/tracking numbers, money, decimals, positions, numbers in code, ISBNs, build numbers).

Every slot a template fills records its gold label, so each line carries its exact spans. The gold labels are
for the `public` IP scope: loopback, private, link-local, shared, documentation and multicast addresses
identify nobody and are not PII. The builder never looks at the detector; it is seeded and deterministic for
a given `phonenumbers` version (`BUILT_WITH`). Hard cases in other phrasings are hand-written in
`tests/data/pii_hard.jsonl`; `benchmarks/pii.py` scores the detector on all of them.

    pip install -e ".[bench]"          # from the repository root
    python benchmarks/pii_set.py [--out tests/data/pii_wild.jsonl] [--seed 13] [--per-template 3]
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import random
import re
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import phonenumbers as pn
from phonenumbers import PhoneNumberFormat as Fmt
from phonenumbers import PhoneNumberType as PType

Gen = Callable[[random.Random], tuple[str, str | None]]  # (value, gold type or None)
BUILT_WITH = "9.0.43"  # the phonenumbers version that wrote tests/data/pii_wild.jsonl (its metadata shapes numbers)

# --- people, places, words (not PII by themselves in this set) -----------------------------------------------
FIRST = ["jane", "john", "maria", "wei", "minjun", "yuki", "lukas", "camille", "priya", "joao", "olga", "ahmed",
         "sofia", "liam", "chen", "aarav", "hana", "mateo", "emma", "noah", "fatima", "oliver", "ines", "kenji"]
LAST = ["doe", "smith", "garcia", "zhang", "kim", "tanaka", "muller", "martin", "sharma", "silva", "ivanova",
        "hassan", "rossi", "brown", "li", "patel", "sato", "lopez", "johnson", "dubois", "novak", "park"]
MAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.jp", "web.de", "mail.ru", "naver.com", "qq.com",
                "proton.me", "acme-corp.com", "uni-heidelberg.de", "cs.stanford.edu", "example.co.uk",
                "orange.fr", "icloud.com", "company.com.br", "hotmail.it", "startup.io", "gov.in",
                "stud.tu-darmstadt.de", "mail.example-shop.de", "fastmail.fm", "yandex.ru", "163.com"]
CITIES = ["Berlin", "Seoul", "Paris", "London", "Tokyo", "Beijing", "Mumbai", "Sao Paulo", "Boston", "Madrid"]
NAT_REGIONS = ["US", "CA", "GB", "DE", "FR", "KR", "JP", "CN", "IN", "BR", "AU", "IT", "ES", "NL", "MX"]
INTL_REGIONS = NAT_REGIONS + ["RU", "PL", "SE", "CH", "AT", "BE", "IE", "SG", "HK", "TW", "ZA", "NG", "TR",
                              "AR", "NZ", "PT", "IL", "AE", "ID", "PH", "VN", "EG", "UA", "CZ"]


def pick(*options: str) -> Gen:
    return lambda rng: (rng.choice(options), None)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# --- e-mail --------------------------------------------------------------------------------------------------
def email(rng: random.Random) -> tuple[str, str]:
    f, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([f"{f}.{last}", f"{f[0]}.{last}", f"{f}_{last}{rng.randint(1, 99)}", f"{f}{last}",
                        f"{f}-{last}", f"{f}.{last}+{rng.choice(['news', 'github', 'work', 'shop'])}",
                        f"{f}{rng.randint(1970, 2005)}", _digits(rng, 9), f"{f.capitalize()}.{last.capitalize()}"])
    domain = rng.choice(MAIL_DOMAINS)
    if local.isdigit():
        domain = rng.choice(["qq.com", "163.com"])  # numeric mailboxes are the norm there
    return f"{local}@{domain}", "email"


# --- phone numbers -------------------------------------------------------------------------------------------
def _number(rng: random.Random, region: str) -> pn.PhoneNumber:
    """A random valid number of the region, built from its example number with the subscriber part changed."""
    kind = rng.choice([PType.FIXED_LINE, PType.MOBILE])
    ex = pn.example_number_for_type(region, kind) or pn.example_number(region)
    nsn = pn.national_significant_number(ex)
    keep = max(2, len(nsn) - 6)
    for _ in range(200):
        num = pn.parse(f"+{ex.country_code}{nsn[:keep]}{_digits(rng, len(nsn) - keep)}")
        if pn.is_valid_number(num):
            return num
    return ex


def phone_national(rng: random.Random, region: str | None = None) -> tuple[str, str]:
    region = region or rng.choice(NAT_REGIONS)
    num = _number(rng, region)
    text = pn.format_number(num, Fmt.NATIONAL)
    style = rng.random()
    if region in ("US", "CA") and style < 0.5:  # 202-555-0143, 202.555.0143, 1-202-555-0143
        d = pn.national_significant_number(num)
        sep = "-" if style < 0.1 else rng.choice(["-", "-", "."])
        text = ("1-" if style < 0.1 else "") + f"{d[:3]}{sep}{d[3:6]}{sep}{d[6:]}"
    elif region in ("FR",) and style < 0.3:  # 06.12.34.56.78
        text = text.replace(" ", ".")
    elif region in ("DE",) and style < 0.3:  # 030/901820, the old German habit
        text = text.replace(" ", "/", 1)
    return text, "phone"


def phone_international(rng: random.Random, region: str | None = None) -> tuple[str, str]:
    region = region or rng.choice(INTL_REGIONS)
    num = _number(rng, region)
    style = rng.random()
    if style < 0.45:
        text = pn.format_number(num, Fmt.INTERNATIONAL)
    elif style < 0.65:
        text = pn.format_number(num, Fmt.E164)
    elif style < 0.8:  # +49-30-901820
        text = pn.format_number(num, Fmt.INTERNATIONAL).replace(" ", "-")
    elif style < 0.9 and region in ("GB", "DE", "CH", "AT", "NL", "IT", "BE"):  # +44 (0)20 7946 0958
        intl = pn.format_number(num, Fmt.INTERNATIONAL)
        cc, rest = intl.split(" ", 1)
        text = f"{cc} (0){rest}" if region != "IT" else intl
    elif region == "US":  # +1 (202) 555-0143
        text = "+1 " + pn.format_number(num, Fmt.NATIONAL)
    else:  # 0049 30 901820: the international call prefix written out
        text = "00" + pn.format_number(num, Fmt.INTERNATIONAL)[1:]
    return text, "phone"


def phone_any(rng: random.Random) -> tuple[str, str]:
    return phone_national(rng) if rng.random() < 0.55 else phone_international(rng)


def phone_e164(rng: random.Random) -> tuple[str, str]:
    return pn.format_number(_number(rng, rng.choice(INTL_REGIONS)), Fmt.E164), "phone"


def phone_of(region: str) -> Gen:
    return lambda rng: phone_national(rng, region)


# --- IP addresses --------------------------------------------------------------------------------------------
PUBLIC_FIRST = [8, 13, 18, 20, 23, 31, 34, 35, 37, 45, 46, 51, 52, 62, 66, 77, 78, 80, 81, 82, 85, 87, 88, 89, 91,
                93, 94, 95, 104, 109, 114, 128, 133, 142, 151, 157, 162, 176, 178, 185, 188, 193, 195, 199, 203, 211,
                212, 213, 217]


def _public(addr: str) -> bool:
    a = ipaddress.ip_address(addr)
    return a.is_global and not a.is_multicast


def ipv4(rng: random.Random) -> tuple[str, str]:
    while True:
        a = f"{rng.choice(PUBLIC_FIRST)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if _public(a):
            return a, "ip"


def ipv4_single_digits(rng: random.Random) -> tuple[str, str]:
    """Public addresses written with one-digit octets: the well-known resolvers and their like."""
    if rng.random() < 0.6:
        return rng.choice(["8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "4.2.2.2", "4.2.2.1"]), "ip"
    while True:
        a = ".".join(str(rng.randint(0 if 0 < i < 3 else 1, 9)) for i in range(4))
        if _public(a):
            return a, "ip"


def ipv4_public(rng: random.Random) -> tuple[str, str]:
    return ipv4_single_digits(rng) if rng.random() < 0.25 else ipv4(rng)


def ipv4_nonpublic(rng: random.Random) -> tuple[str, None]:
    """Private, loopback, link-local, shared (CGNAT), documentation and multicast addresses."""
    r = rng.randint
    return rng.choice([f"10.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}", f"192.168.{r(0, 255)}.{r(1, 254)}",
                       f"172.{r(16, 31)}.{r(0, 255)}.{r(1, 254)}", "127.0.0.1", f"169.254.{r(1, 254)}.{r(1, 254)}",
                       f"100.{r(64, 127)}.{r(0, 255)}.{r(1, 254)}", f"192.0.2.{r(1, 254)}",
                       f"198.51.100.{r(1, 254)}", f"203.0.113.{r(1, 254)}", "239.255.255.250", "224.0.0.251",
                       "0.0.0.0"]), None


def ipv6(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.3:
        a = rng.choice(["2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111",
                        "2a00:1450:4001:82a::200e", "2a03:2880:f10c:83:face:b00c:0:25de", "2620:fe::fe"])
    else:
        while True:
            prefix = rng.choice(["2a0", "260", "240", "2a1", "2c0"]) + rng.choice("0123456789abcdef")
            groups = [prefix] + [f"{rng.randint(0, 0xFFFF):x}" for _ in range(7)]
            if rng.random() < 0.5:
                groups[3:6] = ["0", "0", "0"]
            a = str(ipaddress.ip_address(":".join(groups)))  # compressed, as tools print it
            if _public(a):
                break
        if rng.random() < 0.2:
            a = ipaddress.ip_address(a).exploded
        if rng.random() < 0.15:
            a = a.upper()
    return a, "ip"


def ipv6_nonpublic(rng: random.Random) -> tuple[str, None]:
    r = rng.randint
    return rng.choice(["::1", f"fe80::{r(1, 0xffff):x}:{r(1, 0xffff):x}:{r(1, 0xffff):x}:{r(1, 0xffff):x}",
                       f"fd{r(0, 255):02x}:{r(0, 0xffff):x}:{r(0, 0xffff):x}::{r(1, 0xffff):x}",
                       f"2001:db8:{r(0, 0xffff):x}::{r(1, 0xffff):x}", "2001:db8::1", "ff02::1"]), None


def ip_any(rng: random.Random) -> tuple[str, str | None]:
    x = rng.random()
    return ipv4_public(rng) if x < 0.55 else ipv6(rng) if x < 0.7 else ipv4_nonpublic(rng)


# --- payment cards -------------------------------------------------------------------------------------------
def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


ISSUERS = [("4", 16, "4444"), ("4", 16, "4444"), ("51", 16, "4444"), ("55", 16, "4444"), ("2221", 16, "4444"),
           ("2720", 16, "4444"), ("34", 15, "465"), ("37", 15, "465"), ("6011", 16, "4444"), ("65", 16, "4444"),
           ("3530", 16, "4444"), ("3589", 16, "4444"), ("36", 14, "464"), ("300", 14, "464"),
           ("62", 16, "4444"), ("6759", 16, "4444")]  # Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro


def _card_digits(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    return body + _luhn_digit(body)


def _group(digits: str, groups: str, sep: str) -> str:
    out, i = [], 0
    for g in groups:
        out.append(digits[i : i + int(g)])
        i += int(g)
    return sep.join(out)


def card(rng: random.Random) -> tuple[str, str]:
    prefix, length, groups = rng.choice(ISSUERS)
    d = _card_digits(rng, prefix, length)
    sep = rng.choice([" ", " ", "-", ""])
    return (_group(d, groups, sep) if sep else d), "credit_card"


def card_bad_luhn(rng: random.Random) -> tuple[str, None]:
    d = _card_digits(rng, "4", 16)
    d = d[:-1] + str((int(d[-1]) + rng.randint(1, 9)) % 10)
    return _group(d, "4444", rng.choice([" ", "-"])), None


# --- IBANs (structures from the SWIFT IBAN registry: n digits, a letters, c alphanumerics) --------------------
IBAN_BBAN = {"DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n",
             "BE": "12n", "AT": "16n", "CH": "5n12c", "PL": "24n", "SE": "20n", "DK": "14n", "FI": "14n",
             "NO": "11n", "PT": "21n", "IE": "4a14n", "LU": "3n13c", "CZ": "20n", "SK": "20n", "HU": "24n",
             "RO": "4a16c", "HR": "17n", "SI": "15n", "BG": "4a6n8c", "GR": "7n16c", "TR": "6n16c", "SA": "2n18c",
             "AE": "19n", "IL": "19n", "BR": "23n1a1c", "UA": "6n19c", "KZ": "3n13c", "QA": "4a21c", "MU": "4a19n3a",
             "EG": "25n", "JO": "4a4n18c", "LT": "16n", "LV": "4a13c", "EE": "16n", "MT": "4a5n18c", "CY": "8n16c"}


def _bban(rng: random.Random, spec: str) -> str:
    out = []
    for n, kind in re.findall(r"(\d+)([nac])", spec):
        alphabet = {"n": string.digits, "a": string.ascii_uppercase,
                    "c": string.digits * 3 + string.ascii_uppercase}[kind]  # mostly digits, as in practice
        out.append(_alnum(rng, int(n), alphabet))
    return "".join(out)


def _iban_check(country: str, bban: str) -> str:
    n = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{98 - n % 97:02d}"


def iban(rng: random.Random) -> tuple[str, str]:
    country = rng.choice(list(IBAN_BBAN))
    bban = _bban(rng, IBAN_BBAN[country])
    s = country + _iban_check(country, bban) + bban
    if rng.random() < 0.6:  # the paper format: groups of four
        s = " ".join(s[i : i + 4] for i in range(0, len(s), 4))
    return s, "iban"


def iban_bad_check(rng: random.Random) -> tuple[str, None]:
    country = rng.choice(["DE", "GB", "FR", "NL", "ES"])
    bban = _bban(rng, IBAN_BBAN[country])
    good = int(_iban_check(country, bban))
    s = f"{country}{(good + rng.randint(1, 90)) % 97 + 2:02d}{bban}"
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4)), None


# --- national ids --------------------------------------------------------------------------------------------
def ssn(rng: random.Random) -> tuple[str, str]:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}", "national_id"


def ssn_other_format(rng: random.Random) -> tuple[str, str]:
    s = ssn(rng)[0]
    return (s.replace("-", " ") if rng.random() < 0.5 else s.replace("-", "")), "national_id"


def nino(rng: random.Random) -> tuple[str, str]:
    first = rng.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = rng.choice("ABCEGHJKLMNPRSTWXYZ")
    if first + second in {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}:
        first, second = "A", "B"
    d = _digits(rng, 6)
    suffix = rng.choice("ABCD")
    text = f"{first}{second}{d}{suffix}" if rng.random() < 0.5 else f"{first}{second} {d[:2]} {d[2:4]} {d[4:]} {suffix}"
    return text, "national_id"


# --- secrets -------------------------------------------------------------------------------------------------
B64 = string.ascii_letters + string.digits + "+/"
URLSAFE = string.ascii_letters + string.digits + "-_"


def _b64url(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


def secret_token(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(9)
    if kind == 0:
        s = rng.choice(["AKIA", "ASIA"]) + _alnum(rng, 16, string.ascii_uppercase + "234567")
    elif kind == 1:
        s = rng.choice(["ghp_", "gho_", "ghs_"]) + _alnum(rng, 36)
    elif kind == 2:
        s = "github_pat_" + _alnum(rng, 22) + "_" + _alnum(rng, 59)
    elif kind == 3:
        s = f"xoxb-{_digits(rng, 12)}-{_digits(rng, 13)}-{_alnum(rng, 24)}"
    elif kind == 4:
        s = rng.choice(["sk-proj-", "sk-ant-api03-", "sk-"]) + _alnum(rng, 48, URLSAFE)
    elif kind == 5:
        s = "AIza" + _alnum(rng, 35, URLSAFE)
    elif kind == 6:
        s = rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + _alnum(rng, 24)
    elif kind == 7:
        header = _b64url({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"})
        payload = _b64url({"sub": _digits(rng, 10), "name": rng.choice(FIRST).title(), "iat": 1700000000})
        s = f"{header}.{payload}.{_alnum(rng, 43, URLSAFE)}"
    else:
        body = "\n".join(_alnum(rng, 64, B64) for _ in range(3))
        kind_word = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
        s = f"-----BEGIN {kind_word}PRIVATE KEY-----\n{body}\n-----END {kind_word}PRIVATE KEY-----"
    return s, "secret"


def password(rng: random.Random, marks: tuple[str, ...] = ("!", "#", "$", "@", "&", ""),
             alphabet: str = string.ascii_letters + string.digits + "!#%^*-_") -> tuple[str, str]:
    """A password someone chose: words with digits and symbols, or a generated string."""
    if rng.random() < 0.5:
        word = rng.choice(["Summer", "Tr0ub4dor", "Kangaroo", "Bl4ckb1rd", "Winter", "Dragon", "Sunshine"])
        return f"{word}{rng.choice(list(marks))}{rng.randint(10, 2099)}", "secret"
    return _alnum(rng, rng.randint(12, 24), alphabet), "secret"


def api_value(rng: random.Random) -> tuple[str, str]:
    """An opaque key or token value: hex, base64 or random alphanumerics."""
    kind = rng.randrange(3)
    if kind == 0:
        return _alnum(rng, 32, "0123456789abcdef"), "secret"
    if kind == 1:
        return _alnum(rng, 40, B64), "secret"  # AWS secret access key shape
    return _alnum(rng, rng.randint(24, 40)), "secret"


def url_password(rng: random.Random) -> tuple[str, str]:
    """A password as it appears in a URL or on a command line: no characters that would need escaping."""
    return password(rng, ("!", "-", "_", ".", ""), string.ascii_letters + string.digits + "-_.~")


def basic_auth(rng: random.Random) -> tuple[str, str]:
    return base64.b64encode(f"{rng.choice(FIRST)}:{password(rng)[0]}".encode()).decode(), "secret"


# --- look-alikes (never PII) ---------------------------------------------------------------------------------
def version(rng: random.Random) -> tuple[str, None]:
    r = rng.randint
    return rng.choice([f"{r(0, 9)}.{r(0, 9)}.{r(0, 9)}.{r(0, 9)}", f"{r(1, 4)}.{r(0, 30)}.{r(0, 20)}",
                       f"{r(1, 16)}.{r(0, 9)}.{r(0, 99)}.{r(0, 9)}", f"{r(0, 2)}.{r(0, 99)}.{r(0, 9)}rc{r(1, 3)}",
                       f"{r(1, 9)}.{r(0, 9)}.{r(0, 9)}"]), None


def pyver(rng: random.Random) -> tuple[str, None]:
    return f"3.{rng.randint(8, 13)}.{rng.randint(0, 12)}", None


def version4(rng: random.Random) -> tuple[str, None]:
    """Four-part versions with one-digit parts: they read exactly like an address."""
    return ".".join(str(rng.randint(0, 9)) for _ in range(4)), None


def date(rng: random.Random) -> tuple[str, None]:
    y, m, d = rng.randint(2015, 2026), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{y}{m:02d}{d:02d}", f"{d:02d}.{m:02d}.{y}",
                       f"{m}/{d}/{y}", f"{y}/{m:02d}/{d:02d}", f"{y}.{m:02d}.{d:02d}"]), None


def clock(rng: random.Random) -> tuple[str, None]:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}", None


def hexstr(rng: random.Random) -> tuple[str, None]:
    return _alnum(rng, rng.choice([7, 8, 12, 32, 40, 64]), "0123456789abcdef"), None


def uuid(rng: random.Random) -> tuple[str, None]:
    h = _alnum(rng, 32, "0123456789abcdef")
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{rng.choice('89ab')}{h[17:20]}-{h[20:]}", None


def timestamp(rng: random.Random) -> tuple[str, None]:
    t = rng.randint(1_500_000_000, 1_800_000_000)
    return (str(t) if rng.random() < 0.6 else f"{t}{_digits(rng, 3)}"), None


def order_no(rng: random.Random) -> tuple[str, None]:
    r = rng.randint
    return rng.choice([f"{r(100, 999)}-{_digits(rng, 7)}-{_digits(rng, 7)}",  # marketplace order ids
                       f"INV-{r(2019, 2026)}-{r(1, 99999):05d}", f"#{r(10000, 999999)}", f"PO{_digits(rng, 8)}",
                       f"{r(1, 9)}{_digits(rng, 9)}", f"ORD-{_digits(rng, 4)}-{_digits(rng, 4)}",
                       f"1Z{_alnum(rng, 6, string.ascii_uppercase + string.digits)}{_digits(rng, 10)}",
                       f"{_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)}", f"TKT-{r(1000, 99999)}",
                       f"CASE-{_digits(rng, 8)}", f"{r(10, 99)}-{_digits(rng, 6)}"]), None


def money(rng: random.Random) -> tuple[str, None]:
    a = rng.randint(1000, 9_999_999)
    c = rng.randint(0, 99)
    return rng.choice([f"${a:,}.{c:02d}", f"{a:,}.{c:02d} USD", f"€{a:,}".replace(",", ".") + f",{c:02d}",
                       f"{a:,} €".replace(",", " "), f"¥{a:,}", f"£{a / 100:,.2f}",
                       f"{a:,}".replace(",", " ") + " Ft",
                       f"INR {a:,}"]), None


def decimal(rng: random.Random) -> tuple[str, None]:
    return rng.choice([f"{rng.uniform(-180, 180):.6f}", f"{rng.random():.9f}", f"{rng.uniform(0, 1e4):.3f}",
                       f"{rng.uniform(1, 9):.2f}e-{rng.randint(3, 9)}"]), None


def linecol(rng: random.Random) -> tuple[str, None]:
    return f"{rng.choice(['main.py', 'src/app.ts', 'lib/util.go', 'index.js'])}:{rng.randint(1, 2000)}:" \
           f"{rng.randint(1, 120)}", None


def isbn(rng: random.Random) -> tuple[str, None]:
    body = "978" + _digits(rng, 9)
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    d = body + str(check)
    return (f"{d[:3]}-{d[3]}-{d[4:7]}-{d[7:12]}-{d[12]}" if rng.random() < 0.6 else d), None


def build(rng: random.Random) -> tuple[str, None]:
    r = rng.randint
    return rng.choice([f"10.0.{r(17000, 26100)}.{r(1, 5000)}", f"6.{r(1, 3)}.{r(7600, 9600)}.{r(16384, 23000)}",
                       f"4.0.30319.{r(17000, 42000)}", f"{r(100, 130)}.0.{r(5000, 6500)}.{r(10, 200)}",
                       f"{r(2019, 2026)}{r(1, 12):02d}{r(1, 28):02d}.{r(1, 9)}"]), None


def netmask(rng: random.Random) -> tuple[str, None]:
    return rng.choice(["255.255.255.0", "255.255.0.0", "255.255.255.252", "255.255.255.128", "255.0.0.0",
                       "255.255.248.0"]), None


def oid(rng: random.Random) -> tuple[str, None]:
    return rng.choice(["1.3.6.1.4.1.311.21.8", "1.3.6.1.2.1.1.3.0", "2.5.4.3", "1.2.840.113549.1.1.11",
                       "1.3.6.1.5.5.7.3.1", "2.16.840.1.101.3.4.2.1"]), None


def port(rng: random.Random) -> tuple[str, None]:
    return str(rng.choice([22, 53, 80, 443, 3306, 5432, 6379, 8080, 8443, 9200, 27017, 51820])), None


SLOTS: dict[str, Gen] = {
    "email": email, "email_url": lambda rng: (email(rng)[0].replace("@", "%40"), "email"),
    "phone": phone_any, "phone_nat": phone_national, "phone_intl": phone_international,
    "phone_e164": phone_e164, "phone_kr": phone_of("KR"), "phone_us": phone_of("US"), "phone_de": phone_of("DE"),
    "phone_fr": phone_of("FR"), "phone_gb": phone_of("GB"), "phone_jp": phone_of("JP"), "phone_cn": phone_of("CN"),
    "phone_br": phone_of("BR"), "phone_in": phone_of("IN"),
    "ip": ip_any, "ip4": ipv4_public, "ip4s": ipv4_single_digits, "ip6": ipv6, "ip4_np": ipv4_nonpublic,
    "ip6_np": ipv6_nonpublic, "card": card, "card_bad": card_bad_luhn, "iban": iban, "iban_bad": iban_bad_check,
    "ssn": ssn, "ssn_alt": ssn_other_format, "nino": nino, "token": secret_token, "password": password,
    "apikey": api_value, "urlpass": url_password, "basic": basic_auth,
    "sport": lambda rng: (str(rng.randint(1024, 65535)), None),
    "version": version, "version4": version4, "date": date, "time": clock, "hash": hexstr, "uuid": uuid,
    "ts": timestamp, "order": order_no, "money": money, "decimal": decimal, "linecol": linecol, "isbn": isbn,
    "build": build, "pyver": pyver, "netmask": netmask, "oid": oid, "port": port,
    "first": lambda rng: (rng.choice(FIRST).title(), None), "last": lambda rng: (rng.choice(LAST).title(), None),
    "city": lambda rng: (rng.choice(CITIES), None), "user": lambda rng: (rng.choice(FIRST), None),
    "n": lambda rng: (str(rng.randint(1, 500)), None), "status": pick("200", "301", "404", "500", "403"),
    "bytes": lambda rng: (str(rng.randint(200, 90000)), None),
}

# --- templates, by where such lines are found -----------------------------------------------------------------
TEMPLATES: dict[str, list[str]] = {
    "logs": [
        '{ip4} - - [05/Mar/2024:{time} +0000] "GET /index.html HTTP/1.1" {status} {bytes} "-" "Mozilla/5.0"',
        '{ip} - {user} [12/Feb/2025:{time} +0100] "POST /api/login HTTP/2.0" {status} {bytes}',
        "Mar  5 {time} web01 sshd[{n}]: Failed password for root from {ip4} port {port} ssh2",
        "Mar  5 {time} web01 sshd[{n}]: Accepted publickey for {user} from {ip} port 51234 ssh2",
        "Mar  5 {time} bastion sshd[{n}]: Invalid user admin from {ip4_np} port 40022",
        "Mar  5 {time} gw kernel: [UFW BLOCK] IN=eth0 OUT= SRC={ip4} DST={ip4_np} LEN=60 PROTO=TCP DPT={port}",
        "{date} {time} DENY TCP {ip4}:{sport} -> {ip4_np}:{port} (policy drop-inbound)",
        "2024-03-05T{time}Z level=warn msg=\"rate limited\" client={ip} path=/v1/chat latency_ms={n}",
        "[{date} {time}] ERROR upstream timed out while connecting to upstream, client: {ip4}, server: api",
        "fail2ban.actions: WARNING [sshd] Ban {ip4}",
        "{time} {ip6} GET /healthz {status} {n}ms",
        "Connection closed by authenticating user git {ip6} port {sport} [preauth]",
        "dnsmasq[{n}]: query[A] example.org from {ip4_np}, forwarded to {ip4s}",
        "haproxy[{n}]: {ip4}:{sport} [05/Mar/2024:{time}.{n}] fe_https be_app/app2 0/0/1/{n}/{n} {status} {bytes}",
        "{date} {time},{n} INFO [worker-3] Job {uuid} finished in {decimal}s (build {build})",
        "{time} audit: user={user} action=export rows={n} request_id={uuid}",
        "kernel: eth0: link up, gateway {ip4s}, netmask {netmask}, lease {n}s",
        "postfix/smtpd[{n}]: NOQUEUE: reject: RCPT from unknown[{ip4}]: 554 5.7.1 <{email}>: Relay access denied",
        "{date} {time} SMS sent to {phone_e164} status=delivered segments=1",
        "[{date} {time}] payment captured order={order} amount={money} card=****{n}",
    ],
    "commands": [
        "ssh {user}@{ip4s} -p {port}", "ssh -i ~/.ssh/id_ed25519 deploy@{ip4}", "ping -c 4 {ip4s}",
        "curl -sS http://{ip4}:{port}/status", "curl -v https://[{ip6}]:8443/health",
        "nc -zv {ip4s} {port}", "traceroute {ip4}", "dig @{ip4s} example.com +short", "nslookup example.org {ip4s}",
        "iptables -A INPUT -s {ip4} -j DROP", "wget http://{ip4s}/install.sh -O - | sh",
        "mysql -h {ip4} -u root -p{urlpass} app", "curl -u admin:{urlpass} https://ci.internal/api/json",
        "git clone https://{user}:{token}@github.com/acme/app.git",
        "pip install requests=={version} && python -m app --port {port}",
        "docker run -p {port}:{port} -e TZ=UTC nginx:{version}", "kubectl scale deploy web --replicas={n}",
        "redis-cli -h {ip4_np} -p 6379 -a {urlpass} INFO",
        "export OPENAI_API_KEY={token}", "gpg --recv-keys {hash}",
    ],
    "urls": [
        "Open http://{ip4s}:{port}/x in a browser to see the dashboard.",
        "The webhook posts to https://{ip4}/hooks/{uuid} every {n} seconds.",
        "<a href=\"mailto:{email}?subject=Order%20{order}\">Contact us</a>",
        "<a href=\"tel:{phone_e164}\">Call now</a>",
        "Send feedback to mailto:{email} (include build {build}).",
        "postgres://app:{urlpass}@{ip4_np}:5432/orders",
        "mongodb+srv://admin:{urlpass}@cluster0.mongodb.net/prod?retryWrites=true",
        "Mirror: ftp://{ip4}/pub/releases/{version}/",
        "redirect_uri=https://app.example.com/cb?state={hash}&code={hash}",
        "https://maps.example.com/?q={decimal},{decimal}&z=14",
    ],
    "csv": [
        "{n},{first} {last},{email},{phone},{city}",
        "{first},{last},{phone_kr},{email},{date}",
        "{uuid},{ip4},{date} {time},{status},{bytes}",
        "{n};{first} {last};{iban};{money};{date}",
        "{first} {last},{ssn},{date},{city}",
        "{order},{date},{money},{card}",
        "{date},{decimal},{decimal},{n},{version}",
        "{first} {last}\t{phone_intl}\t{email}",
        "id,ip,asn\n{n},{ip4s},AS{bytes}",
        "{isbn},\"{first} {last}\",{money},{n}",
    ],
    "configs": [
        '{{"name": "{first} {last}", "email": "{email}", "phone": "{phone}"}}',
        '{{"client_ip": "{ip}", "ts": {ts}, "request_id": "{uuid}"}}',
        '{{"upstream": "{ip4s}", "timeout_ms": {n}, "version": "{version}"}}',
        '{{"db": {{"host": "{ip4_np}", "port": 5432, "password": "{password}"}}}}',
        '{{"api_key": "{apikey}", "region": "eu-west-1", "retries": {n}}}',
        "nameserver {ip4s}", "dns: [{ip4s}, {ip4s}]", "listen: {ip4_np}:{port}",
        "DB_PASSWORD={password}", "AWS_SECRET_ACCESS_KEY={apikey}", "STRIPE_SECRET_KEY={token}",
        "smtp_password: \"{password}\"", "client_secret: {apikey}", "SECRET_KEY = '{apikey}'",
        "server {ip4}:{port} weight={n} max_fails=3;", "allow {ip4}; deny all;",
        "Authorization: Bearer {token}", "Authorization: Basic {basic}",
        "subnet: {ip4_np}/24  # netmask {netmask}", "oid: {oid}  # sysUpTime", "image: redis:{version}",
        "    - {ip6}/128  # office egress", "trusted_proxies = [\"{ip4_np}\", \"{ip4}\"]",
        "[smtp]\nhost = {ip4}\nuser = {email}\npassword = {password}",
    ],
    "tickets": [
        "Customer {first} {last} ({email}) called from {phone} about invoice {order}.",
        "Hi team, my number changed to {phone_nat}, please update my profile.",
        "Caller left a voicemail, callback number {phone_kr}.",
        "Ticket {order}: user reports login failures from {ip4} since {date}.",
        "Refund of {money} issued to card {card} on {date}.",
        "Please wire the deposit to IBAN {iban} (reference {order}).",
        "The SSN on file, {ssn}, does not match the one on the W-2.",
        "NI number {nino} was supplied on the payroll form.",
        "Escalated: the gateway {ip4s} was under maintenance between {time} and {time}.",
        "{first} says the office line {phone_de} rings out; mobile is {phone_intl}.",
        "Contact: {first} {last} <{email}>, tel. {phone_fr}",
        "Reach our Tokyo desk at {phone_jp} (9:00-18:00 JST).",
        "Beijing support: {phone_cn}, Sao Paulo: {phone_br}.",
        "Our Bangalore office is on {phone_in}; London on {phone_gb}.",
        "US customers can dial {phone_us}.",
        "Order {order} shipped; tracking {order}, total {money}.",
        "Card ending in {n} was declined; ask the customer for another card.",
        "The leaked key {token} was revoked at {time}.",
        "Reset password for {email} requested from {ip}.",
        "Employee {first} {last}: SSN {ssn_alt}, start date {date}.",
    ],
    "payments": [
        "Visa {card} exp 09/28 CVV {n}", '{{"card_number": "{card}", "exp_month": 12, "exp_year": 2027}}',
        "Pay with {card} or by transfer to {iban}.", "Kontoinhaber: {first} {last}, IBAN: {iban}, BIC: DEUTDEFF",
        "RIB / IBAN : {iban}", "beneficiary_iban={iban}&amount={n}.00&currency=EUR",
        "SEPA mandate for {iban} signed on {date}.", "Ref {order}: card {card} charged {money}",
        "Tax form: SSN {ssn}, DOB {date}", 'ssn: "{ssn}"', "national_insurance_number: {nino}",
        "HMRC letter for NINO {nino} dated {date}", "{first} {last},{nino},{phone_gb},{email}",
        "Applicant SSN: {ssn_alt} (verified {date})", "{card} / {iban} / {ssn}",
        "Declined: {card_bad}; accepted: {card}.", "Old IBAN {iban_bad}, new IBAN {iban}.",
        "Invoice {order}: {money}, IBAN {iban}, due {date}.",
        "Checkout failed for {card} (3-D Secure timeout).", "cc={card}&exp=0928&cvv={n}",
        "{first} paid {money} with the card {card} on {date}.",
    ],
    "email_headers": [
        "From: \"{first} {last}\" <{email}>", "To: {first} {last} <{email}>, {email}", "Reply-To: <{email}>",
        "Received: from mail.example.com ([{ip4}]) by mx.google.com with ESMTPS id {hash}",
        "X-Originating-IP: [{ip4}]", "Cc: {email}; {email}", "Message-ID: <{uuid}@mail.example.com>",
        "Date: Tue, 5 Mar 2024 {time} +0100",
        'GET /unsubscribe?email={email_url}&t={hash} HTTP/1.1" 200',
        "[{first} {last}](mailto:{email}) maintains the {city} mirror.",
    ],
    "prose": [
        "You can reach me at {email} or on {phone}.",
        "I moved to {city} in {date}; my new address for mail is {email}.",
        "The site resolves to {ip4} now, not {ip4_np}.",
        "Python {pyver} fixed the bug; upgrade from {version} if you can.",
        "Is {ip4s} faster than {ip4s} for you?",
        "I pinged {ip4s} and {ip4} from home, both answered in {n} ms.",
        "Block {ip4} and {ip6}, they keep scraping the site.",
        "Her laptop showed up as {ip4} in the VPN logs.",
        "{ip4s} went down for an hour yesterday.",
        "Version {version4} of the firmware was released on {date}.",
        "Bump the package to {version4} before tagging the release.",
        "see section {version4} of the spec for the retry rules.",
        "The {money} invoice {order} is due on {date} at {time}.",
        "Pi is about {decimal}, and the answer is {n}.",
        "Error at {linecol}: unexpected token.",
        "ISBN {isbn} is the second edition.",
        "The build {build} ships with .NET {build}.",
        "The record {uuid} was created at {ts}.",
        "Commit {hash} reverted {hash}.",
        "Use the netmask {netmask} for the /24 and {netmask} for the /16.",
        "The OID {oid} identifies the certificate template.",
        "It listens on :{port} and :{port} by default.",
        "Set x = [{n}, {n}, {n}] and y = {decimal} * {n}.",
        "Between {date} and {date}, {n} users signed up.",
        "My card {card_bad} keeps failing, is the number wrong?",
        "The IBAN {iban_bad} was rejected by the bank, check digit mismatch.",
        "The cluster talks over {ip6_np} and {ip4_np} only.",
        "The DNS server is {ip4s}; the backup is {ip6}.",
        "Jane wrote from {ip6} and then from {ip4}.",
        "The timestamps {ts} and {ts} are a day apart.",
        "Times: {time}, {time}, {time}.",
        "Order {order} for {money} and order {order} for {money}.",
        "Dial {phone_intl} for the hotline or {phone_e164} from abroad.",
    ],
}

# Fixed lines: look-alikes in the shapes they take in real text, with no slot to fill.
NEGATIVES = [
    "Download logo@2x.png and icon@3x.webp for retina screens.",
    "Decorate it with @functools.lru_cache(maxsize=128) and call obj.method@decorator.",
    "Follow @jane_doe and @acme on social media.",
    "npm install @types/node@20.11.5 lodash@4.17.21",
    "docker pull python@sha256:2a6c8b7c0c9b4f1e5d3a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c",
    "Use user@localhost or root@host for local logins.",
    "password: ********", "password=<redacted>", "api_key: YOUR_API_KEY_HERE", "password: changeme",
    "password = os.environ[\"DB_PASSWORD\"]", "password: ${DB_PASSWORD}", "password={{ vault_db_password }}",
    "api_key = settings.STRIPE_API_KEY", "token = None", "PASSWORD_MIN_LENGTH = 12",
    "password = getpass.getpass(\"Password: \")", "token = request.headers.get(\"X-Auth-Token\")",
    "secret_key_base: <%= ENV[\"SECRET_KEY_BASE\"] %>", "--password-file /run/secrets/db_password",
    "GitHub tokens start with ghp_ and AWS key ids with AKIA.",
    "MAC 00:1a:2b:3c:4d:5e and 3C-22-FB-7A-11-09 are on the same port.",
    "ECDSA key fingerprint is MD5:43:51:43:a1:b5:fc:8b:b7:0a:3a:a9:b1:0f:66:73:a8.",
    "std::vector<int> v; a::b::c(); Foo::Bar::baz",
    "The sizes are 1024 2048 4096 8192 16384 32768.",
    "Population 8 336 817 (2019), area 783.8 km2.",
    "Dimensions 1920x1080, 3840x2160; ratio 16:9.",
    "Mar 5 12:30:45 and 2024-03-05T12:30:45.123456+01:00",
    "Coordinates 37.774929, -122.419416 (San Francisco).",
    "matrix = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]",
    "CVE-2021-44228 affects log4j 2.0-beta9 to 2.14.1.",
    "Windows 10 build 19045.3803, kernel 5.15.0-91-generic.",
    "Postal codes 10115 Berlin, 75008 Paris, SW1A 1AA London.",
    "Call extension 4521 or room 3.14.",
    "The OID 1.3.6.1.4.1.311 is Microsoft's enterprise arc.",
    "Use 255.255.255.0 (a /24) on the LAN and 0.0.0.0/0 for the default route.",
    "PID 48213 used 1.2 GB; uptime 12:30:45.",
    "HTTP 404 at 2024/03/05 12:30:45; retry in 3600 s.",
    "The NI specimen QQ 12 34 56 C is printed in the HMRC guide.",
    "Phone numbers in the docs use 555-0100 through 555-0199.",
    "Example addresses: 192.0.2.1, 198.51.100.7, 203.0.113.9 and 2001:db8::42.",
    "Tested on 1.2.3.4, v2.0.0.1, Python 3.11.7, numpy==1.26.4 and .NET 4.0.30319.42000.",
    "Dates 2024-03-05, 05/03/2024, 20240305 and times 12:30:45.",
    "Hashes d41d8cd98f00b204e9800998ecf8427e, da39a3ee5e6b4b0d3255bfef95601890afd80709, git a1b2c3d.",
    "Timestamps 1700000000 and 1700000000123; invoice INV-2024-000123; total $1,234,567.89.",
    "Line 120, column 15: main.py:120:15.",
    "ISBN 978-3-16-148410-0 and ISBN-10 0-306-40615-2.",
    "UPS 1Z999AA10123456784 and FedEx 7489 1234 5678.",
    "Card ending 4242; masked **** **** **** 4242; BIN 411111.",
    "IBAN format: two letters, two check digits, up to 30 characters.",
]

# Fixed positives in less common real shapes (mixed with look-alikes).
POSITIVES: list[tuple[str, list[list[str]]]] = [
    ('"Jane Doe" <jane@x.org>', [["email", "jane@x.org"]]),
    ("mailto:jane@x.org?subject=Hello%20there", [["email", "jane@x.org"]]),
    ("Kontakt: jürgen.müller@beispiel.de", [["email", "jürgen.müller@beispiel.de"]]),
    ("Questions? first.last@dept.university.ac.uk or help@shop.technology",
     [["email", "first.last@dept.university.ac.uk"], ["email", "help@shop.technology"]]),
    ("Write to JOHN.SMITH@EXAMPLE.COM (caps are fine).", [["email", "JOHN.SMITH@EXAMPLE.COM"]]),
    ("the gateway 8.8.4.4 was under maintenance", [["ip", "8.8.4.4"]]),
    ("ssh admin@8.8.4.4 -p 22", [["ip", "8.8.4.4"]]),
    ("Call 010-8888-6666 after lunch.", [["phone", "010-8888-6666"]]),
    ("Berlin office: 030 901820", [["phone", "030 901820"]]),
    ("Portable : 06 12 34 56 78", [["phone", "06 12 34 56 78"]]),
    ("London: 020 7946 0958", [["phone", "020 7946 0958"]]),
    ("Tokyo: 03-1234-5678", [["phone", "03-1234-5678"]]),
    ("Shanghai mobile 138 0013 8000", [["phone", "138 0013 8000"]]),
    ("SP: (11) 91234-5678", [["phone", "(11) 91234-5678"]]),
    ("DC: (202) 555-0143", [["phone", "(202) 555-0143"]]),
    ("http://8.8.8.8:8080/x", [["ip", "8.8.8.8"]]),
    ("Failed password for root from 203.0.113.9 port 22 ssh2; next from 185.220.101.4 port 22 ssh2",
     [["ip", "185.220.101.4"]]),
    ("ping 1.1.1.1", [["ip", "1.1.1.1"]]),
]


def render(template: str, rng: random.Random) -> dict:
    """The template with each {slot} filled, and the gold spans of the slots that are PII, in text order."""
    gold: list[list[str]] = []

    def fill(m: re.Match) -> str:
        value, kind = SLOTS[m.group(1)](rng)
        if kind:
            gold.append([kind, value])
        return value

    text = re.sub(r"\{([a-z0-9_]+)\}", fill, template).replace("{{", "{").replace("}}", "}")
    return {"text": text, "pii": gold}


def build_set(seed: int, per_template: int) -> list[dict]:
    rng = random.Random(seed)
    rows = [render(t, rng) for group in TEMPLATES.values() for t in group for _ in range(per_template)]
    rows += [{"text": t, "pii": []} for t in NEGATIVES]
    rows += [{"text": t, "pii": g} for t, g in POSITIVES]
    seen, out = set(), []
    for r in rows:  # a template filled twice the same way is one line
        if r["text"] not in seen:
            seen.add(r["text"])
            out.append(r)
    for r in out:
        assert all(s in r["text"] for _, s in r["pii"]), r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "tests" / "data" / "pii_wild.jsonl")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--per-template", type=int, default=3)
    args = ap.parse_args()
    rows = build_set(args.seed, args.per_template)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    support = Counter(t for r in rows for t, _ in r["pii"])
    print(f"{len(rows)} lines ({sum(not r['pii'] for r in rows)} without PII) -> {args.out}")
    print("spans: " + ", ".join(f"{k} {v}" for k, v in sorted(support.items())))


if __name__ == "__main__":
    main()
