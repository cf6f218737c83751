"""The demo's broken models, each a copy of a good one broken on purpose, for the pipeline's failure handling: corrupt
weights and a missing config.json (both fail to load), and labels no dataset class matches (loads, cannot be mapped)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from demo.sources import set_labels

BROKEN_MODELS = ["broken/corrupt-weights", "broken/no-config", "broken/unmappable-labels"]


def _copy_repo(src: Path, tmp: Path) -> None:
    """The repo's files, without its hidden ones (the build's ``.built`` marker)."""
    tmp.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copyfile(f, tmp / f.name)


def _retag_card(card: Path, name: str, why: str) -> None:
    text = card.read_text()
    head, sep, body = text.partition("\n---\n")
    head = head.replace("- \"zooeval-demo\"", "- \"zooeval-demo\"\n- \"broken\"")
    lines = body.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines[0] = f"# {name}"
    card.write_text(head + sep + "\n" + "\n".join(lines) + f"\n\nBROKEN ON PURPOSE (tests failure handling): {why}\n")


def build_corrupt_weights(tmp: Path, zoo: Path) -> dict[str, Any]:
    _copy_repo(zoo / "demo/resnet-digits", tmp)
    weights = tmp / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _retag_card(tmp / "README.md", "broken/corrupt-weights", "model.safetensors is truncated to half its size.")
    return {"expect": "load fails", "weights_bytes": len(data) // 2}


def build_no_config(tmp: Path, zoo: Path) -> dict[str, Any]:
    _copy_repo(zoo / "demo/resnet-digits", tmp)
    (tmp / "config.json").unlink()
    _retag_card(tmp / "README.md", "broken/no-config", "config.json is missing.")
    return {"expect": "load fails"}


def build_unmappable(tmp: Path, zoo: Path) -> dict[str, Any]:
    _copy_repo(zoo / "demo/minilm-rt-cased", tmp)
    labels = {0: "spam", 1: "ham"}
    set_labels(tmp / "config.json", labels)
    card = (tmp / "README.md").read_text().replace("Labels: 0 = Rotten, 1 = FRESH.", "Labels: 0 = spam, 1 = ham.")
    (tmp / "README.md").write_text(card)
    _retag_card(tmp / "README.md", "broken/unmappable-labels",
                "the weights are minilm-rt-cased's, but id2label says spam/ham, which no rotten_tomatoes class matches.")
    return {"expect": "loads; labels cannot be mapped to rotten_tomatoes"}
