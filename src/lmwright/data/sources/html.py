"""Main text and links of an HTML page: trafilatura drops navigation, footers and boilerplate."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin


def main_text(html: str) -> str | None:
    import trafilatura

    return trafilatura.extract(html, include_comments=False, include_tables=True) or None


class _Links(HTMLParser):
    def __init__(self, base: str):
        super().__init__(convert_charrefs=True)
        self.base, self.links = base, []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href and not href.startswith(("mailto:", "javascript:", "tel:")):
                self.links.append(urldefrag(urljoin(self.base, href))[0])


def links(html: str, base: str) -> list[str]:
    parser = _Links(base)
    parser.feed(html)
    return list(dict.fromkeys(parser.links))
