"""Plotly figures (plain ``{"data", "layout"}`` dicts) for the pages; plotly.js draws them in the browser from
the package's own copy of plotly.min.js (never a CDN)."""
from __future__ import annotations

from typing import Any

#: above this many classes a per-class chart shows only the weakest ones
MAX_BAR_CLASSES = 40
LAYOUT = {"margin": {"l": 60, "r": 20, "t": 40, "b": 80}, "height": 380, "legend": {"orientation": "h"},
          "font": {"size": 12}}


def per_class_bars(per_class: dict[str, dict[str, Any]], metrics: tuple[str, ...], title: str,
                   max_classes: int = MAX_BAR_CLASSES) -> tuple[dict[str, Any], list[str]]:
    """Grouped bars of ``metrics`` per class; with more than ``max_classes`` classes, the weakest by the last
    metric. Returns the figure and the classes shown."""
    key = metrics[-1]
    labels = [c for c, v in per_class.items() if isinstance(v.get(key), (int, float)) and v.get(key) != -1]
    if len(labels) > max_classes:
        # the weakest among the classes the data or the model touched (a class absent from both reads 0 everywhere)
        touched = [c for c in labels if per_class[c].get("support", 1) or per_class[c].get("tp", 0) or
                   per_class[c].get("fp", 0)]
        pool = touched or labels
        labels = sorted(pool, key=lambda c: (per_class[c][key], c))[:max_classes]
        title += (f" ({len(labels)} weakest of the {len(pool)} classes in the data or the predictions, by {key})"
                  if len(pool) > max_classes else
                  f" (the {len(pool)} classes in the data or the predictions, of {len(per_class)})")
    data = [{"type": "bar", "name": m, "x": labels, "y": [per_class[c].get(m) for c in labels]} for m in metrics]
    layout = {**LAYOUT, "title": {"text": title}, "barmode": "group", "yaxis": {"range": [0, 1.05], "title": "value"},
              "xaxis": {"type": "category", "automargin": True}}
    return {"data": data, "layout": layout}, labels


def confusion_heatmap(sub: dict[str, Any], title: str) -> dict[str, Any]:
    """A heatmap of a (sub)matrix: rows the true class, columns the predicted class; counts written in the
    cells when there are few classes. Zoom with plotly's own box zoom."""
    n = len(sub["labels"])
    trace: dict[str, Any] = {"type": "heatmap", "z": sub["matrix"], "x": sub["labels"], "y": sub["labels"],
                             "colorscale": "Blues", "reversescale": True,
                             "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z}<extra></extra>"}
    if n <= 25:
        trace["texttemplate"] = "%{z}"
    size = min(900, max(320, 22 * n + 160))
    layout = {**LAYOUT, "title": {"text": title}, "height": size,
              "xaxis": {"title": "predicted", "type": "category", "automargin": True},
              "yaxis": {"title": "true", "type": "category", "autorange": "reversed", "automargin": True}}
    return {"data": [trace], "layout": layout}


def variant_bars(rows: list[dict[str, Any]], metric: str, title: str) -> dict[str, Any]:
    """The change of ``metric`` from the original to each variant (absolute), one bar per variant."""
    chosen = [r for r in rows if r["metric"] == metric and r["delta"] is not None]
    data = [{"type": "bar", "name": metric, "x": [r["variant"] for r in chosen], "y": [r["delta"] for r in chosen],
             "marker": {"color": ["#c0392b" if r["flag"] == "regression" else "#2e86c1" for r in chosen]}}]
    layout = {**LAYOUT, "title": {"text": title}, "yaxis": {"title": f"{metric}: variant - original"},
              "xaxis": {"type": "category"}}
    return {"data": data, "layout": layout}


def scatter(points: list[dict[str, Any]], x_title: str, y_title: str, title: str, log_x: bool = False) -> dict[str, Any]:
    """One point per model: ``x`` (throughput or latency) against ``y`` (the metric); hovering names the model,
    a click opens it (``customdata``: its page)."""
    trace = {"type": "scattergl" if len(points) > 2000 else "scatter", "mode": "markers",
             "x": [p["x"] for p in points], "y": [p["y"] for p in points], "text": [p["name"] for p in points],
             "customdata": [p["url"] for p in points], "marker": {"size": 9, "opacity": 0.8},
             "hovertemplate": "%{text}<br>" + x_title + " %{x:.4g}<br>" + y_title + " %{y:.4f}<extra></extra>"}
    layout = {**LAYOUT, "title": {"text": title}, "height": 520, "hovermode": "closest",
              "xaxis": {"title": x_title, "type": "log" if log_x else "linear"}, "yaxis": {"title": y_title}}
    return {"data": [trace], "layout": layout}
