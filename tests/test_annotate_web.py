"""The annotation tool end to end, in Chromium: two annotators label overlapping items of the tiny project's
documents with the keyboard, one skips, undoes and comments; a reviewer adjudicates the disagreements; agreement is
computed (and checked against scikit-learn); an annotator sees the reviewer's correction; keys without the role are
refused; the accepted labels become a dataset with lineage, and a classifier is fine-tuned on it."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from lmwright.cli import app as cli
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.data.document import read_docs
from lmwright.data.sources.pydocs import chapter
from lmwright.serve.api import create_app, serve_in_thread
from lmwright.serve.auth import hash_key
from lmwright.serve.state import ServeConfig

N = 12  # items: enough for the classifier's 10% held out


def _truth(root) -> tuple[dict[str, str], list[str]]:
    """Each train document's library chapter (the simulated annotators' true label), and the label set."""
    split = next((root / ".lmwright" / "artifacts").glob("*/train.parquet"))
    truth = {d["id"]: chapter(str(d["locator"])) for d in read_docs(split)}
    return truth, sorted(set(truth.values()))


@pytest.mark.slow
def test_two_annotators_a_reviewer_agreement_and_a_fine_tune(tiny_copy):
    from playwright.sync_api import sync_playwright

    root = tiny_copy
    truth, labels = _truth(root)
    spec = yaml.safe_load((root / "lmwright.yaml").read_text())
    spec["annotate"] = {"tasks": [{"name": "chapters", "kind": "classification", "labels": labels,
                                   "items": {"from": "split", "split": "train", "limit": N},
                                   "guidelines": "chapters.md", "overlap": 2, "gold_every": 0,
                                   "reviewers": ["rita"]}]}
    (root / "lmwright.yaml").write_text(yaml.safe_dump(spec))
    (root / "chapters.md").write_text("# Chapters\n- Pick the library chapter of the documented module.\n")
    r = CliRunner().invoke(cli, ["annotate", "sync", "-C", str(root)])
    assert r.exit_code == 0 and f"{N} items added" in r.output and "guidelines v1" in r.output, r.output
    ws = Workspace.open(root)
    store = Store(ws.store_url)
    for name, role in (("ann1", "annotator"), ("ann2", "annotator"), ("rita", "reviewer"), ("u", "user")):
        store.add_api_key(name, hash_key(f"lmw-{name}"), role)
    wrong = {}  # ann2 disagrees on three items
    app = create_app([], ServeConfig(ws.spec.serve, store))  # no models: annotation needs only the store
    with serve_in_thread(app, ready=False) as url, sync_playwright() as pw:
        def api(key: str, path: str, **kw) -> httpx.Response:
            return httpx.request("POST" if "json" in kw else "GET", f"{url}{path}",
                                 headers={"Authorization": f"Bearer lmw-{key}"}, timeout=30, **kw)

        # keys without the annotation role, or reviewing without the reviewer role: 403 in OpenAI's error shape
        assert api("u", "/v1/annotate/tasks").status_code == 403
        refused = api("ann1", "/v1/annotate/chapters/review")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_permissions"
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])

        def session(key: str):
            page = browser.new_page()
            page.goto(f"{url}/annotate")
            page.evaluate(f"localStorage.setItem('lmwright-key', 'lmw-{key}')")
            page.goto(f"{url}/annotate")
            page.locator("#guidelines li").wait_for(timeout=20000)
            return page

        def current(page) -> str:
            page.wait_for_function("document.getElementById('work').dataset.key !== undefined")
            return page.locator("#work").get_attribute("data-key")

        def answer(page, label: str, before: str) -> None:
            page.keyboard.press(str(labels.index(label) + 1))
            page.wait_for_function(f"document.getElementById('work').dataset.key !== {json.dumps(before)}")

        p1 = session("ann1")
        assert "library chapter" in p1.locator("#guidelines").inner_text()
        for _ in range(N):
            key = current(p1)
            answer(p1, truth[key], key)
        assert "queue is empty" in p1.locator("#work").inner_text()
        p2 = session("ann2")
        key = current(p2)
        p2.keyboard.press("s")  # skip, then take it back
        p2.wait_for_function(f"document.getElementById('work').dataset.key !== {json.dumps(key)}")
        p2.keyboard.press("u")
        p2.wait_for_function(f"document.getElementById('work').dataset.key === {json.dumps(key)}")
        p2.once("dialog", lambda d: d.accept("hard one: two chapters fit"))
        p2.keyboard.press("c")
        p2.locator("text=your comment: hard one").wait_for()
        for i in range(N):
            key = current(p2)
            label = truth[key]
            if i in (1, 4, 7):
                label = wrong[key] = next(x for x in labels if x != truth[key])
            answer(p2, label, key)
        progress = p2.locator("#progress").inner_text()
        assert f"{N} answered by you" in progress and f"{N - 3}/{N} final" in progress, progress

        # the reviewer decides each disagreement (and the commented item) in the review tab
        rv = session("rita")
        rv.click("#tab-review")
        rv.locator("#agreement").wait_for(timeout=20000)
        assert rv.locator(".review").count() == 4  # the three disagreements and the commented item
        rv.on("dialog", lambda d: d.accept("see the module's chapter"))
        while rv.locator(".review").count():
            box = rv.locator(".review").first
            item_key = api("rita", "/v1/annotate/chapters/review").json()["data"][0]["key"]
            box.locator(f"button:text-is('final: {truth[item_key]}')").click()
            rv.wait_for_timeout(300)
        rep = api("rita", "/v1/annotate/chapters/agreement").json()
        (pair,) = rep["pairs"]
        assert api("rita", "/v1/annotate/chapters/review").json()["data"] == []  # all decided
        # the pair's kappa is scikit-learn's on the same answers (the items both labelled: all N)
        recs = _answers(store)
        assert pair["n"] == N and {k for k in recs if recs[k]["ann1"] != recs[k]["ann2"]} == set(wrong)
        assert pair["kappa"] == pytest.approx(cohen_kappa_score([recs[k]["ann1"] for k in recs],
                                                                [recs[k]["ann2"] for k in recs]))
        # ann2 sees the reviewer's corrections of their three answers
        p2.click("#tab-mine")
        p2.locator(".mine").first.wait_for()
        assert p2.locator(".corrected").count() == 3
        assert "corrected by rita" in p2.locator(".corrected").first.inner_text()
        # a stale edit is a conflict (409), and what was stored stays
        item = api("ann1", "/v1/annotate/chapters/history").json()["data"][0]
        stale = api("ann1", f"/v1/annotate/chapters/items/{item['item']}",
                    json={"value": {"label": labels[0]}, "revision": 0})
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "conflict"
        bad = api("ann1", f"/v1/annotate/chapters/items/{item['item']}",
                  json={"value": {"label": "astrology"}, "revision": 1})
        assert bad.status_code == 400 and "not in the label set" in bad.json()["error"]["message"]
        browser.close()

    # the accepted labels: a dataset version with lineage to the split, and a classifier fine-tuned on it
    r = CliRunner().invoke(cli, ["annotate", "accept", "chapters", "-C", str(root), "--json"])
    assert r.exit_code == 0, r.output
    acc = json.loads(r.stdout)
    assert acc["final"] == N and acc["how"] == {"agreed": N - 4, "adjudicated": 4} and acc["documents"] == N
    assert acc["annotators"] == ["ann1", "ann2"]
    rows = [json.loads(x) for x in open(f"{acc['path']}/finetune.jsonl")]
    assert sorted((r["text"][:30], r["label"]) for r in rows) == sorted(
        (d["text"][:30], truth[d["id"]]) for d in read_docs(f"{acc['path']}/docs.parquet"))
    docs = read_docs(f"{acc['path']}/docs.parquet")
    assert all(json.loads(d["labels"]) == {"chapter": truth[d["id"]], "chapters": truth[d["id"]]} for d in docs)
    r = CliRunner().invoke(cli, ["lineage", "annotate", "-C", str(root), "--json"])
    assert r.exit_code == 0 and "split" in r.stdout, r.output
    r = CliRunner().invoke(cli, ["finetune", "classify", "-C", str(root), "--set",
                                 f"finetune.classify.data={acc['path']}/finetune.jsonl"])
    assert r.exit_code == 0, r.output


def _answers(store) -> dict[str, dict[str, str]]:
    from lmwright.annotate import review as ar

    answers, _ = ar.answers_by_item(store, "chapters")
    return {k: {who: v["label"] for who, v in a.items()} for k, a in answers.items()}
