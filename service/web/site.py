"""``zooeval report -o DIR``: the pages written as a static site (the same templates and page contexts as the
running service, with links between files; service.web.links.StaticLinks)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from core import store_views as sv
from core.store import Store
from processors.base import processor_label
from service.web import pages
from service.web.app import plotly_js
from service.web.links import StaticLinks
from service.web.models_view import ModelFilters, models_page
from service.web.render import STATIC, render

MAX_RUNS = 20


def write_site(store: Store, home: Path, out: Path, max_models: int = 1000,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the site into ``out``: the start page, the models table (the first ``max_models`` by name) and
    each listed model's pages (one per current result, and the variant comparison per dataset), the datasets,
    the last runs, and a scatter per dataset. Returns counts."""
    out = Path(out)
    (out / "static").mkdir(parents=True, exist_ok=True)
    for name in ("style.css", "app.js"):
        shutil.copyfile(STATIC / name, out / "static" / name)
    shutil.copyfile(plotly_js(), out / "static" / "plotly.min.js")
    links = StaticLinks(out)
    written: list[str] = []

    def write(name: str, template: str, context: dict[str, Any]) -> None:
        html = render(template, {**context, "links": links, "static": True, "nav": "/" + name})
        (out / name).write_text(html, encoding="utf-8")
        written.append(name)

    write(links.home(), "home.html", pages.home_page(store, links))
    table = ModelFilters(limit=max(1, min(max_models, 2000)))
    context = pages.models_table(store, table, links)
    write(links.models(), "models.html", context)
    models = context["page"].rows
    if context["page"].next_cursor:
        log(f"the report lists the first {len(models)} models (--max-models)")
    for row in models:
        key = row["key"]
        write(links.model(key), "model.html", pages.model_page(store, home, key, pages.ModelPageQuery(), links))
        selections = sv.result_variants(store, key)
        for r in selections:
            chosen = {"dataset": r["dataset"], "split": r["split"], "variant": r["variant"],
                      "processor": processor_label(r)}
            write(links.model(key, **chosen), "model.html",
                  pages.model_page(store, home, key, pages.ModelPageQuery(**chosen), links))
        for dataset in sorted({r["dataset"] for r in selections}):
            write(links.variants(key, dataset), "variants.html",
                  pages.variants_page(store, key, pages.VariantsQuery(dataset=dataset), links))
    write(links.datasets(), "datasets.html", pages.datasets_page(store, links))
    for name, doc in sorted(store.datasets().items()):
        context = pages.dataset_page(store, name, links)
        write(links.dataset(name), "dataset.html", context)
        if context["metric"]:
            query = pages.ScatterQuery(dataset=name, metric=context["metric"], variant="original")
            write(links.scatter(dataset=name, metric=context["metric"], variant="original"), "scatter.html",
                  pages.scatter_page(store, query, links))
    write(links.runs(), "runs.html", pages.runs_page(store, links))
    for run in sv.list_runs(store, MAX_RUNS):
        write(links.run(run["_id"]), "run.html", pages.run_page(store, run["_id"], links))
    log(f"wrote {len(written)} pages and {len(links.copied)} images to {out}")
    return {"pages": len(written), "images": len(links.copied), "models": len(models),
            "all_models": models_page(store, ModelFilters(limit=1)).total}
