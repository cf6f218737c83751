"""The pages in headless Chromium (Debian's ``chromium``, driven by Playwright's Python package with the system
browser; no browser download) on the store of one real cycle (tests/web_store.py), served by uvicorn on
127.0.0.1: every page opens without a script error, a filter and a sort of the models table, two models picked
with the checkboxes and compared, and the charts drawn by plotly.js with the numbers of the store.

Screenshots go to ``$ZOOEVAL_SCREENSHOTS`` (default: ``.screenshots/`` at the repository root, git-ignored)."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from core.store import Store
from service.mongo import free_port
from service.web.app import create_app
from tests.web_store import DATASET, DIGITS, copy_database, session_web_store

CHROMIUM = os.environ.get("ZOOEVAL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("ZOOEVAL_SCREENSHOTS") or Path(__file__).resolve().parents[1] / ".screenshots")
TOKEN = "browser-token-0123456789abcdef"

if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's `chromium` package, or set ZOOEVAL_CHROMIUM)",
                allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


@pytest.fixture(scope="module")
def built(tmp_path_factory, mongo_uri):
    return session_web_store(tmp_path_factory, mongo_uri)


@pytest.fixture(scope="module")
def store(built, mongo_uri):
    name = "zb_" + os.urandom(5).hex()
    copy_database(mongo_uri, built["db"], name)
    s = Store(mongo_uri, name)
    yield s
    s.client.drop_database(name)
    s.close()


@pytest.fixture(scope="module")
def base_url(store, built):
    """The app served by uvicorn in a thread on a free loopback port."""
    import uvicorn

    app = create_app(store, built["home"], token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page that records script errors and failed requests (the test asserts there were none)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.problems = []
    p.on("pageerror", lambda exc: p.problems.append(f"script error: {exc}"))
    p.on("console", lambda msg: p.problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    p.on("requestfailed", lambda req: p.problems.append(f"request failed: {req.url}"))
    yield p
    context.close()


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a real picture, not an empty page
    return path


def figure(page, testid: str) -> dict:
    """The data plotly.js drew in a chart (``gd.data``), after checking it rendered an SVG."""
    chart = page.locator(f"[data-testid={testid}][data-rendered=true]")
    chart.wait_for(timeout=20_000)
    assert chart.locator("svg.main-svg").count() >= 1
    return chart.evaluate("el => el.data.map(t => ({x: t.x, y: t.y, z: t.z, type: t.type}))")


def test_every_page_opens_without_errors(page, base_url, built):
    run_id = built["run_id"]
    urls = {"home": "/", "models": "/models", "model": "/model/local/web/good",
            "model-failed": "/model/local/web/corrupt", "variants": f"/variants/local/web/good?dataset={DATASET}",
            "compare": "/compare?m=local/web/good&m=local/web/second", "scatter": f"/scatter?dataset={DATASET}",
            "datasets": "/datasets", "dataset": f"/dataset/{DIGITS}", "runs": "/runs", "run": f"/run/{run_id}"}
    for name, url in urls.items():
        response = page.goto(base_url + url)
        assert response.status == 200, (url, response.status)
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").count() >= 1, url
        for chart in page.locator("div.chart").all():  # every chart on the page was drawn
            chart.locator("svg.main-svg").first.wait_for(timeout=20_000)
        shot(page, f"page-{name}")
    assert page.problems == []
    page.goto(base_url + "/model/local/web/corrupt")
    assert "model_load" in page.locator("[data-testid=failures]").inner_text()
    response = page.goto(base_url + "/model/local/no-such-model")
    assert response.status == 404 and "no-such-model" in page.content()


def test_filter_and_sort_the_models_table(page, base_url, store):
    page.goto(base_url + "/models")
    page.select_option("[data-testid=filter-task]", "text-classification")
    page.click("[data-testid=apply-filters]")
    page.wait_for_url("**task=text-classification**")
    shown = page.locator("[data-testid=models-table] tbody tr[data-key]").evaluate_all(
        "rows => rows.map(r => r.dataset.key)")
    expected = [m["_id"] for m in store.find_models({"status": "active", "task": "text-classification"},
                                                    {"name": 1}, sort=[("name", 1), ("_id", 1)])]
    assert shown == expected and len(expected) == 4
    page.click("[data-testid=sort-name]")  # name is the current sort: a click reverses it, keeping the filter
    page.wait_for_url("**sort=-name**")
    assert "task=text-classification" in page.url
    shown = page.locator("[data-testid=models-table] tbody tr[data-key]").evaluate_all(
        "rows => rows.map(r => r.dataset.key)")
    assert shown == expected[::-1]
    # rank by a metric: the values shown are the store's, best first
    page.goto(base_url + "/models")
    page.select_option("[data-testid=rank-metric]", "accuracy")
    page.select_option("[data-testid=rank-dataset]", DATASET)
    page.fill("[data-testid=rank-variant]", "typos")
    page.click("[data-testid=rank]")
    page.wait_for_url("**sort=metric**")
    values = [float(v) for v in page.locator("td.metric-value").all_inner_texts()]
    stored = sorted((r["overall"]["accuracy"] for r in store.latest_results({"dataset": DATASET, "variant": "typos"})),
                    reverse=True)
    assert values == pytest.approx(stored, abs=5e-5) and len(values) == 2
    shot(page, "models-ranked")
    assert page.problems == []


def test_pick_two_models_and_compare_them(page, base_url, store):
    page.goto(base_url + "/models?task=text-classification")
    button = page.locator("[data-testid=compare-selected]")
    assert button.is_disabled()
    for key in ("local/web/good", "local/web/second"):
        page.check(f"tr[data-key='{key}'] [data-testid=pick]")
    assert button.inner_text() == "Compare selected (2)" and button.is_enabled()
    button.click()
    page.wait_for_url("**/compare?**")
    assert "m=local%2Fweb%2Fgood" in page.url and "m=local%2Fweb%2Fsecond" in page.url
    table = page.locator("[data-testid=compare-table]").inner_text()
    assert "web/good" in table and "web/second" in table
    assert page.locator("[data-testid=baseline-name]").inner_text() == "web/good"  # web/second's card base_model
    mine = {r["variant"]: r["overall"]["accuracy"] for r in store.latest_results({"model_key": "local/web/second"})}
    base = {r["variant"]: r["overall"]["accuracy"] for r in store.latest_results({"model_key": "local/web/good"})}
    regressions = page.locator("[data-testid=regressions]").inner_text()
    assert regressions.split()[0].isdigit()
    diff = page.locator("[data-testid=diff-table]").inner_text()
    for variant in mine:
        assert f"{mine[variant] - base[variant]:+.4f}" in diff, (variant, diff)
    shot(page, "compare")
    page.click("[data-testid=toggle-differences]")
    page.wait_for_url("**only_differences=true**")
    assert page.problems == []


def test_charts_are_drawn_with_the_stores_numbers(page, base_url, store):
    result = store.latest_results({"model_key": "local/web/digits", "variant": "greyscale"})[0]
    page.goto(base_url + f"/model/local/web/digits?dataset={DIGITS}&split={result['split']}&variant=greyscale")
    bars = figure(page, "chart-per-class")
    per_class = result["per_class"]
    assert [t["type"] for t in bars] == ["bar", "bar", "bar"]
    for trace, metric in zip(bars, ("precision", "recall", "f1")):
        assert trace["y"] == [per_class[c][metric] for c in trace["x"]] and len(trace["x"]) == 10
    heatmap = figure(page, "chart-confusion")[0]
    cm = result["confusion_matrix"]
    assert heatmap["type"] == "heatmap" and heatmap["x"] == cm["labels"] and heatmap["z"] == cm["matrix"]
    single = result["runtime"]["single_stream"]  # the batch-1 latency percentiles the cycle measured
    assert page.locator("[data-testid=latency] td").inner_text() == \
        " / ".join(f"{single[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms"))
    # the misclassified samples, most confident first, each with its (greyscale) image loaded
    rows = page.locator("[data-testid=misclassifications] tr:has(td)")
    stored = sorted(result["misclassifications"], key=lambda m: (-m["confidence"], m["instance"]))[:50]
    assert stored and rows.count() == len(stored)
    for row, mis in zip(rows.all(), stored):
        assert mis["instance"] in row.inner_text() and mis["predicted_class"] in row.inner_text()
        thumb = row.locator("img.thumb")
        thumb.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle(),
                               timeout=10_000)
    shot(page, "model-digits-greyscale")

    page.goto(base_url + f"/variants/local/web/good?dataset={DATASET}")
    delta = figure(page, "chart-variants")[0]
    by_variant = {r["variant"]: r["overall"] for r in store.latest_results({"model_key": "local/web/good"})}
    headline = "accuracy"
    assert delta["x"] == ["typos"]
    assert delta["y"] == pytest.approx([by_variant["typos"][headline] - by_variant["original"][headline]])

    page.goto(base_url + f"/scatter?dataset={DATASET}&metric=accuracy&variant=original")
    points = figure(page, "chart-scatter")[0]
    stored = {r["runtime"]["instances_per_second"]: r["overall"]["accuracy"]
              for r in store.latest_results({"dataset": DATASET, "variant": "original"})}
    assert dict(zip(points["x"], points["y"])) == stored and len(stored) == 2
    shot(page, "scatter")
    assert page.problems == []
