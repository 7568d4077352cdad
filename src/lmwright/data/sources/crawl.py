"""The `crawl` source: a polite web crawler.

From the seed URLs, breadth-first to `max_depth`, at most `max_pages` pages; same site as the seeds by default;
robots.txt obeyed for lmwright's user agent; at least `delay_s` between two requests to one host; retries with
exponential back-off on connection errors, 429 and 5xx; only `text/html` and `text/plain` responses are kept
(others are quarantined with their content type), each at most `max_page_mb`. HTML becomes its main text
(trafilatura). Every fetched URL is either a document or a quarantine record with its reason.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import urllib.robotparser
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from urllib.parse import urlsplit

from lmwright.data.document import Document, Quarantined, doc_id
from lmwright.data.sources.files import decode
from lmwright.data.sources.html import links, main_text

TEXT_TYPES = ("text/html", "text/plain", "application/xhtml+xml")


class _Fetcher:
    def __init__(self, source):
        self.s = source
        self.last: dict[str, float] = {}
        self.robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}

    def _wait(self, host: str) -> None:
        gap = time.monotonic() - self.last.get(host, -1e9)
        if gap < self.s.delay_s:
            time.sleep(self.s.delay_s - gap)
        self.last[host] = time.monotonic()

    def get(self, url: str) -> tuple[int, str, bytes]:
        """(status, content type, body); raises on a final failure."""
        host = urlsplit(url).netloc
        limit = int(self.s.max_page_mb * 2**20)
        for attempt in range(self.s.retries + 1):
            self._wait(host)
            req = urllib.request.Request(url, headers={"User-Agent": self.s.user_agent})
            try:
                with urllib.request.urlopen(req, timeout=self.s.timeout_s) as resp:
                    return resp.status, resp.headers.get_content_type(), resp.read(limit + 1)
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500 or attempt == self.s.retries:
                    return exc.code, exc.headers.get_content_type() if exc.headers else "", b""
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == self.s.retries:
                    raise
            time.sleep(self.s.backoff_s * 2**attempt)
        raise RuntimeError("unreachable")

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self.robots:
            parser = urllib.robotparser.RobotFileParser()
            try:
                status, _, body = self.get(origin + "/robots.txt")
                parser.parse(body.decode("utf-8", "replace").splitlines() if status == 200 else [])
            except Exception:  # noqa: BLE001 - no robots.txt reachable: everything allowed, as the convention says
                parser.parse([])
            self.robots[origin] = parser
        return self.robots[origin].can_fetch(self.s.user_agent, url)


def collect_crawl(source) -> Iterator[Document | Quarantined]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    fetcher = _Fetcher(source)
    hosts = {urlsplit(u).netloc for u in source.seeds}
    queue = deque((u, 0) for u in source.seeds)
    seen = set(source.seeds)
    fetched = 0
    while queue and fetched < source.max_pages:
        url, depth = queue.popleft()
        if not fetcher.allowed(url):
            yield Quarantined(source.name, url, "robots_disallowed", "robots.txt disallows this URL for lmwright")
            continue
        fetched += 1
        try:
            status, ctype, body = fetcher.get(url)
        except Exception as exc:  # noqa: BLE001 - a dead URL is a record, not a crash
            yield Quarantined(source.name, url, "fetch_failed", f"{type(exc).__name__}: {exc}")
            continue
        if status != 200:
            yield Quarantined(source.name, url, "http_error", f"HTTP {status}")
            continue
        if ctype not in TEXT_TYPES:
            yield Quarantined(source.name, url, "content_type", f"{ctype or 'no content type'} is not text")
            continue
        if len(body) > source.max_page_mb * 2**20:
            yield Quarantined(source.name, url, "record_too_large", f"page over max_page_mb {source.max_page_mb}")
            continue
        page, _ = decode(body)
        text = main_text(page) if ctype != "text/plain" else page
        if text:
            yield Document(doc_id(source.name, url), text, url, source.name, url, source.license, now)
        else:
            yield Quarantined(source.name, url, "no_text", "no main text in the page")
        if ctype != "text/plain" and depth < source.max_depth:
            for link in links(page, url):
                if link.startswith(("http://", "https://")) and link not in seen and \
                        (not source.same_site or urlsplit(link).netloc in hosts):
                    seen.add(link)
                    queue.append((link, depth + 1))
