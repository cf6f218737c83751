"""``zooeval report -o DIR``: the pages written as a static site from the store of one real cycle
(tests/web_store.py), through the command line: every page the site links to exists, images are copied,
plotly.js is local, and the numbers shown are the store's."""
from __future__ import annotations

import re
import uuid
from html import unescape

import pytest
from click.testing import CliRunner

from core.store import Store
from service.cli import main
from tests.web_store import DATASET, DIGITS, copy_database, session_web_store


@pytest.fixture(scope="module")
def site(tmp_path_factory, mongo_uri):
    built = session_web_store(tmp_path_factory, mongo_uri)
    name = "zs_" + uuid.uuid4().hex[:10]
    copy_database(mongo_uri, built["db"], name)
    out = tmp_path_factory.mktemp("site") / "site"
    result = CliRunner().invoke(main, ["--home", str(built["home"]), "--mongo-uri", mongo_uri, "--db", name,
                                       "report", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    store = Store(mongo_uri, name)
    yield out, store, result.output
    store.client.drop_database(name)
    store.close()


def local_links(html: str) -> list[str]:
    return [unescape(v) for v in re.findall(r'(?:href|src)="([^"#]+)"', html)
            if not re.match(r"^[a-z]+:", v) and not v.startswith("/")]


def test_the_site_links_only_to_files_it_wrote(site):
    out, store, output = site
    pages = sorted(out.glob("*.html"))
    assert (out / "index.html").is_file() and "open " + str(out / "index.html") in output
    n_results = len(store.latest_results())
    assert len(pages) >= 5 + n_results  # home, models, datasets, runs, the run and one page per result at least
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert 'src="http' not in html and "cdn" not in html.lower(), page.name  # nothing from elsewhere
        for link in local_links(html):
            assert (out / link).is_file(), (page.name, link)
    assert (out / "static" / "plotly.min.js").stat().st_size > 1_000_000
    images = list((out / "media").glob("*.png"))
    assert images  # the digits' misclassified samples, copied next to the pages
    assert f"wrote {len(pages)} pages and {len(images)} images" in output


def test_the_sites_numbers_are_the_stores(site):
    out, store, _ = site
    models_html = (out / "models.html").read_text(encoding="utf-8")
    for model in store.find_models({"status": "active"}, {"name": 1}):
        assert f">{model['name']}</a>" in models_html
    from service.web.links import StaticLinks

    links = StaticLinks(out)
    for r in store.latest_results({"dataset": {"$in": [DATASET, DIGITS]}}):
        page = out / links.model(r["model_key"], dataset=r["dataset"], split=r["split"], variant=r["variant"],
                                 processor=r.get("processor_spec") or r["processor"])
        html = page.read_text(encoding="utf-8")
        assert f"{r['overall']['accuracy']:.4f}" in html, (page.name, r["overall"]["accuracy"])
        assert r["model_name"] in html and r["variant"] in html
