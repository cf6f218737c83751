"""Where the pages link to: URLs of the running service (``ServerLinks``), or the files of the static site
``zooeval report`` writes (``StaticLinks``: flat file names; the query state of the interactive pages, such as
filters and a comparison's selection, does not exist there)."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode


def _query(params: dict[str, Any]) -> str:
    pairs = []
    for key, value in params.items():
        if value is None or value == "":
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return ("?" + urlencode(pairs)) if pairs else ""


class ServerLinks:
    """Links of the running service."""

    static = False

    def home(self) -> str:
        return "/"

    def models(self, **params: Any) -> str:
        return "/models" + _query(params)

    def models_export(self, fmt: str, **params: Any) -> str:
        return f"/models.{fmt}" + _query(params)

    def model(self, key: str, **params: Any) -> str:
        return "/model/" + quote(key, safe="/") + _query(params)

    def variants(self, key: str, dataset: str | None = None) -> str:
        return "/variants/" + quote(key, safe="/") + _query({"dataset": dataset})

    def compare(self, keys: list[str], **params: Any) -> str:
        return "/compare" + _query({"m": list(keys), **params})

    def scatter(self, **params: Any) -> str:
        return "/scatter" + _query(params)

    def datasets(self) -> str:
        return "/datasets"

    def dataset(self, name: str) -> str:
        return "/dataset/" + quote(name, safe="")

    def runs(self) -> str:
        return "/runs"

    def run(self, run_id: str) -> str:
        return "/run/" + quote(run_id, safe="")

    def asset(self, name: str) -> str:
        return "/vendor/plotly.min.js" if name == "plotly.min.js" else "/static/" + name

    def sample_image(self, result_id: str, sample_id: str, path: Path | None = None) -> str:
        return "/media/sample" + _query({"result": result_id, "sample": sample_id})

    def example_image(self, dataset: str, relative: str, path: Path | None = None) -> str:
        return "/media/example" + _query({"dataset": dataset, "path": relative})


def slug(*parts: str) -> str:
    """A file-name-safe name for ``parts`` (readable, with a short hash so distinct parts never collide)."""
    text = "--".join(parts)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80]
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class StaticLinks:
    """Links between the files of a static site in one folder; images are copied into ``media/``."""

    static = True

    def __init__(self, out: Path) -> None:
        self.out = out
        self.copied: dict[Path, str] = {}

    def home(self) -> str:
        return "index.html"

    def models(self, **params: Any) -> str:
        return "models.html"

    def models_export(self, fmt: str, **params: Any) -> str:
        return f"models.{fmt}"

    def model(self, key: str, **params: Any) -> str:
        chosen = [params.get(k) for k in ("dataset", "split", "variant", "processor")]
        return f"model-{slug(key, *[str(c) for c in chosen])}.html" if any(chosen) else f"model-{slug(key)}.html"

    def variants(self, key: str, dataset: str | None = None) -> str:
        return f"variants-{slug(key, str(dataset))}.html"

    def compare(self, keys: list[str], **params: Any) -> str:
        return f"compare-{slug(*keys)}.html"

    def scatter(self, **params: Any) -> str:
        return f"scatter-{slug(str(params.get('dataset')), str(params.get('variant')), str(params.get('metric')))}.html"

    def datasets(self) -> str:
        return "datasets.html"

    def dataset(self, name: str) -> str:
        return f"dataset-{slug(name)}.html"

    def runs(self) -> str:
        return "runs.html"

    def run(self, run_id: str) -> str:
        return f"run-{slug(run_id)}.html"

    def asset(self, name: str) -> str:
        return "static/" + name

    def _copy(self, path: Path | None) -> str:
        if path is None:
            return ""
        if path not in self.copied:
            name = f"media/{slug(str(path))}{path.suffix.lower()}"
            (self.out / "media").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.out / name)
            self.copied[path] = name
        return self.copied[path]

    def sample_image(self, result_id: str, sample_id: str, path: Path | None = None) -> str:
        return self._copy(path)

    def example_image(self, dataset: str, relative: str, path: Path | None = None) -> str:
        return self._copy(path)


Links = ServerLinks | StaticLinks
