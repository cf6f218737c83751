"""What the FiftyOne zoo scraper, the FiftyOne module and the demo share: where zoo weights live, importing
``fiftyone.zoo`` with its settings read from the environment, the identity of a manifest entry, and unique
ImageNet class names.

Importing this module never imports fiftyone (about 3 s): :func:`fiftyone_zoo` does, on first use.

Environment (each only defaulted, never overridden; :func:`fiftyone_env`):

* ``FIFTYONE_MODEL_ZOO_DIR``: where FiftyOne looks for a zoo model's file (default ``ZOOEVAL_HOME/fiftyone/models``).
* ``TORCH_HOME``: torchvision entrypoints load their weights from ``$TORCH_HOME/hub/checkpoints``
  (default ``ZOOEVAL_HOME/torch``). FiftyOne 1.22's redirect of torchvision downloads into the zoo dir has no
  effect with torchvision 0.29, so a torchvision zoo model needs its file in both places.
* ``FIFTYONE_MODEL_ZOO_MANIFEST_CACHE_ENABLED``: ``true``, or every zoo lookup re-parses every manifest
  (about 18 s for a scrape).
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from core.fingerprint import fingerprint

#: fo.config attributes read from the environment again on every use (fiftyone reads them once, at import).
ZOO_CONFIG_ATTRS = ("model_zoo_dir", "model_zoo_manifest_paths", "model_zoo_manifest_cache_enabled")

IMAGENET_LABELS_FILE = "imagenet-labels-no-background.txt"  # {{eta-resources}}/..., named by FiftyOne's configs
#: ImageNet-1K class names that occur twice in the usual short-name lists, made unique (WordNet senses).
IMAGENET_DUPLICATES = {134: "crane (bird)", 517: "crane (machine)", 638: "maillot", 639: "maillot (tank suit)"}


def _home(home: str | os.PathLike | None) -> Path:
    if home is not None:
        return Path(home)
    from core.envinfo import zooeval_home

    return zooeval_home()


def fiftyone_paths(home: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where FiftyOne and torch look for weights: the environment's value, else the default under ``home``
    (``ZOOEVAL_HOME`` when None). Sets nothing."""
    home = _home(home)
    return {
        "FIFTYONE_MODEL_ZOO_DIR": Path(os.environ.get("FIFTYONE_MODEL_ZOO_DIR") or home / "fiftyone" / "models"),
        "TORCH_HOME": Path(os.environ.get("TORCH_HOME") or home / "torch"),
    }


def fiftyone_env(home: str | os.PathLike | None = None) -> dict[str, str]:
    """Default (``os.environ.setdefault``) FIFTYONE_MODEL_ZOO_DIR, TORCH_HOME and the manifest cache switch;
    a value the user set is kept. Returns the three values in effect."""
    for key, path in fiftyone_paths(home).items():
        os.environ.setdefault(key, str(path))
    os.environ.setdefault("FIFTYONE_MODEL_ZOO_MANIFEST_CACHE_ENABLED", "true")
    return {k: os.environ[k] for k in ("FIFTYONE_MODEL_ZOO_DIR", "TORCH_HOME", "FIFTYONE_MODEL_ZOO_MANIFEST_CACHE_ENABLED")}


def fiftyone_zoo(home: str | os.PathLike | None = None, refresh_manifest: bool = False):
    """``fiftyone.zoo.models``, after :func:`fiftyone_env`, with fo.config's zoo settings re-read from the
    environment and config file (fiftyone reads them once, at import; a long-lived process or a test may
    change them later). ``refresh_manifest`` drops FiftyOne's memoised manifest so that manifests edited since
    are read again (a scrape wants that; lookups afterwards hit the cache)."""
    fiftyone_env(home)
    import fiftyone as fo
    import fiftyone.core.config as foc
    import fiftyone.zoo.models as fozm

    fresh = foc.load_config()
    changed = False
    for attr in ZOO_CONFIG_ATTRS:
        if getattr(fo.config, attr, None) != getattr(fresh, attr, None):
            setattr(fo.config, attr, getattr(fresh, attr, None))
            changed = True
    invalidate = getattr(fozm, "_invalidate_zoo_models_manifest", None)
    if (changed or refresh_manifest) and invalidate is not None:
        invalidate()
    return fozm


def manifest_entry(zoo_model) -> dict[str, Any]:
    """A zoo model's manifest entry as plain JSON data (dates as strings)."""
    return json.loads(json.dumps(zoo_model.serialize(), default=str))


def manifest_revision(zoo_model) -> str:
    """A stable hash of the model's whole manifest entry: a changed entry (weights URL, config, labels, tags,
    ...) is a new revision, so the model is evaluated again."""
    return fingerprint({"fiftyone_manifest_entry": manifest_entry(zoo_model)})[:40]


# -- ImageNet class names ------------------------------------------------------------------------------
def imagenet_labels_path() -> Path:
    """FiftyOne's ImageNet-1K labels file (``{{eta-resources}}/imagenet-labels-no-background.txt`` of the
    installed ``voxel51-eta`` package), found without importing eta."""
    spec = importlib.util.find_spec("eta")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package 'eta' (voxel51-eta, installed with fiftyone) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / IMAGENET_LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    return path


def imagenet_short_names() -> list[str]:
    """The 1,000 ImageNet-1K class names of FiftyOne's labels file, by class index (two names repeat)."""
    names: dict[int, str] = {}
    for line in imagenet_labels_path().read_text(encoding="utf-8").splitlines():
        if line.strip():
            idx, _, name = line.partition(":")
            names[int(idx)] = name.strip()
    if sorted(names) != list(range(1000)):
        raise ValueError(f"{imagenet_labels_path()} does not hold class indices 0..999")
    return [names[i] for i in range(1000)]


def unique_labels(labels: list[str]) -> list[str]:
    """Labels made unique, so each names one class: a name that repeats in a 1,000-class list at the known
    ImageNet positions takes its WordNet sense (IMAGENET_DUPLICATES); any other repeat gets its index, e.g.
    ``"crane (517)"``. Labels that do not repeat are kept."""
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    out = []
    for i, lab in enumerate(labels):
        if counts[lab] == 1:
            out.append(lab)
        elif len(labels) == 1000 and i in IMAGENET_DUPLICATES and IMAGENET_DUPLICATES[i].startswith(lab):
            out.append(IMAGENET_DUPLICATES[i])
        else:
            out.append(f"{lab} ({i})")
    return out


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1K class names FiftyOne's models use, made unique (see :func:`unique_labels`)."""
    return unique_labels(imagenet_short_names())
