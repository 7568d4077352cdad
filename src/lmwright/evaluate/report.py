"""The run report: `report.md` and `report.html` from one list of sections, plus the training-curve PNG.

The report card is what a reviewer reads before promoting a model: requirements with pass/fail, the risk register
with each model's verdict, metrics with intervals, the comparison with the previous version, data counts per stage,
the model, training and tuning plots, slices, every model's risk checks and samples (the evaluation sections come
from `card.py`, the risk ones from `risk_card.py`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class Section:
    title: str
    text: str = ""  # a paragraph
    table: list[list[str]] = field(default_factory=list)  # first row = header
    code: str = ""  # preformatted
    image: str = ""  # a file next to the report
    images: list[str] = field(default_factory=list)  # more of them
    items: list[tuple[str, str]] = field(default_factory=list)  # (prompt, continuation)


def training_curve(history: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    steps, loss = history["step"], history["loss"]
    ax.plot(steps, loss, lw=0.8, alpha=0.45, label="train loss (per step)")
    if len(loss) >= 10:
        k = max(1, len(loss) // 50)
        smooth = [sum(loss[max(0, i - k) : i + 1]) / len(loss[max(0, i - k) : i + 1]) for i in range(len(loss))]
        ax.plot(steps, smooth, lw=1.6, label="train loss (smoothed)")
    if history.get("val_step"):
        ax.plot(history["val_step"], history["val_loss"], "o-", lw=1.6, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def lr_curve(history: dict, path: Path) -> None:
    """The learning rate actually used at each step (warmup, then the schedule)."""
    fig, ax = plt.subplots(figsize=(7, 2.6), dpi=110)
    ax.plot(history["step"], history["lr"], lw=1.4, color="tab:purple")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        if s.text:
            out += [s.text, ""]
        if s.table:
            head, *rows = s.table
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "|".join("---" for _ in head) + "|")
            # a cell is one line: a newline would end the table row (model outputs have them)
            out += ["| " + " | ".join(" ".join(str(c).split()).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("")
        for img in [s.image, *s.images] if s.image else s.images:
            out += [f"![{s.title}]({img})", ""]
        if s.code:
            out += ["```yaml", s.code.rstrip(), "```", ""]
        for prompt, cont in s.items:
            out += [f"**{prompt}**{cont}", ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f2f2f2}pre{background:#f7f7f7;padding:8px;overflow-x:auto}
.sample{background:#f7f7f7;padding:6px 10px;margin:6px 0;white-space:pre-wrap}.prompt{font-weight:bold}"""


def render_html(title: str, sections: list[Section]) -> str:
    e = html.escape
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"]
    for s in sections:
        slug = "".join(c if c.isalnum() else "-" for c in s.title.lower())
        out.append(f"<section id='{slug}'><h2>{e(s.title)}</h2>")
        if s.text:
            out.append(f"<p>{e(s.text)}</p>")
        if s.table:
            head, *rows = s.table
            out.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</table>")
        for img in [s.image, *s.images] if s.image else s.images:
            out.append(f"<img src='{e(img)}' alt='{e(s.title)}' style='max-width:100%'>")
        if s.code:
            out.append(f"<pre>{e(s.code)}</pre>")
        for prompt, cont in s.items:
            out.append(f"<div class='sample'><span class='prompt'>{e(prompt)}</span>{e(cont)}</div>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
