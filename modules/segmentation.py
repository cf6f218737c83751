"""Semantic segmentation EvaluationModules: Hugging Face ``AutoModelForSemanticSegmentation`` repos and torchvision
segmentation state dicts.

The segmentation contract (what tasks.segmentation.run_segmentation relies on): ``prepare(loaded, images)`` turns
PIL RGB images into a batch dict that carries each image's original size; ``forward(loaded, batch)`` returns one
int64 tensor per image, (height, width) of the ORIGINAL image, holding the model's label id (a key of
``loaded.id2label``) at each pixel: the logits upsampled bilinearly (``align_corners=False``, as Hugging Face's
``post_process_semantic_segmentation``) to the image size, then argmax over labels. Non-finite logits raise
InferenceError: they are never argmaxed into a class.

Weights are only loaded without running code: Hugging Face repos through modules.hf.load_transformers
(safetensors preferred, pickles only with ``weights_only=True``, never remote code, every parameter from the
checkpoint); torchvision state dicts through modules.detection.load_state_dict (safetensors or
``torch.load(weights_only=True)``).
"""
from __future__ import annotations

from typing import Any

import torch

from modules.base import EvaluationModule, InferenceError, LoadedModel, ModelLoadError, register_module
from modules.detection import load_state_dict, state_dict_file, torchvision_labels
from modules.formats import TRANSFORMERS, model_format
from modules.hf import id2label_of, load_transformers

#: the Hub pipeline tags of the models these modules take ("image-segmentation" is the Hub's tag of semantic,
#: instance and panoptic segmenters alike: the architecture decides)
MODEL_TASKS = ("semantic-segmentation", "image-segmentation")
#: ImageNet normalisation, torchvision's segmentation weights' default preprocessing
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def label_maps(name: str, logits: list[torch.Tensor], sizes: list[tuple[int, int]], n_labels: int) -> list[torch.Tensor]:
    """Per image: its (labels, h, w) logits upsampled bilinearly to (height, width), then argmax (int64);
    InferenceError for non-finite logits or a label count other than the model's."""
    out = []
    for image_logits, (height, width) in zip(logits, sizes):
        if image_logits.ndim != 3 or image_logits.shape[0] != n_labels:
            raise InferenceError(f"{name}: the model returned logits of shape {tuple(image_logits.shape)}; expected "
                                 f"({n_labels} labels, height, width)")
        if not torch.isfinite(image_logits).all():
            raise InferenceError(f"{name}: the model produced NaN or infinite logits; its weights are probably corrupt")
        up = torch.nn.functional.interpolate(image_logits[None].float(), size=(int(height), int(width)),
                                             mode="bilinear", align_corners=False)
        out.append(up[0].argmax(dim=0))
    return out


def _sizes(batch: dict[str, Any]) -> list[tuple[int, int]]:
    return [(int(h), int(w)) for h, w in batch["target_sizes"].tolist()]


# ---------------------------------------------------------------------------------------------- Hugging Face
@register_module
class HFSemanticSegmentation(EvaluationModule):
    """``AutoModelForSemanticSegmentation`` + ``AutoImageProcessor`` (SegFormer, BEiT, DPT, UperNet, MobileViT,
    ...): the processor's resizing and normalisation, the model's logits upsampled to each image."""

    kind = "hf-semantic-segmentation"
    version = 1
    sources = ("huggingface", "local")
    task = "semantic-segmentation"
    datatype = "image"
    model_tasks = MODEL_TASKS

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """A plain Transformers repo whose architecture is a semantic segmenter (a Hub model whose details are not
        fetched yet is taken on trust); never a torchvision state dict."""
        config = model.get("config") or {}
        if config.get("architecture") or model_format(model) != TRANSFORMERS:
            return False
        archs = [str(a) for a in config.get("architectures") or []]
        if archs and not any(a.endswith("ForSemanticSegmentation") for a in archs):
            return False  # an instance or panoptic segmenter the Hub also tags image-segmentation
        if not archs and model.get("source") == "local":
            return False
        return super().accepts(model, datasets)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        net, pre = load_transformers(model, "AutoModelForSemanticSegmentation", "AutoImageProcessor", device)
        return LoadedModel(net, pre, id2label_of(net), device)

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        batch = dict(loaded.preprocessor(images=inputs, return_tensors="pt"))
        batch["target_sizes"] = torch.tensor([[img.height, img.width] for img in inputs], dtype=torch.int64)
        return batch

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> list[torch.Tensor]:
        batch = dict(batch)
        sizes = _sizes({"target_sizes": batch.pop("target_sizes")})
        logits = loaded.model(**batch).logits
        return label_maps(self.name, list(logits), sizes, len(loaded.id2label))


# ---------------------------------------------------------------------------------------------- torchvision
@register_module
class TorchvisionSegmentation(EvaluationModule):
    """A torchvision segmentation architecture (``torchvision.models.get_model``: ``fcn_*``, ``deeplabv3_*``,
    ``lraspp_mobilenet_v3_large``) built with ``weights=None, weights_backbone=None`` and its model document's
    ``config.num_classes``, filled from a local state dict. The model document (a repo's config.json) names
    ``architecture``, ``num_classes`` and ``id2label``; with no labels, a 21-class model takes torchvision's own
    VOC category names (from its weights metadata, no download). Inputs: the image at its own size, scaled to
    [0, 1] and normalised with ImageNet's mean and std (torchvision's segmentation preprocessing, without its
    resize); the ``out`` logits are upsampled to the image."""

    kind = "torchvision-semantic-segmentation"
    version = 1
    sources = ("torchvision", "local")
    task = "semantic-segmentation"
    datatype = "image"
    model_tasks = MODEL_TASKS

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """Only models that name a torchvision architecture (config ``architecture``)."""
        if not (model.get("config") or {}).get("architecture"):
            return False
        return super().accepts(model, datasets)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        import torchvision

        name = model.get("name", "?")
        config = model.get("config") or {}
        arch = config.get("architecture")
        known = torchvision.models.list_models(module=torchvision.models.segmentation)
        if arch not in known:
            raise ModelLoadError(f"model {name!r}: {arch!r} is not a torchvision segmentation architecture "
                                 f"({', '.join(known)})")
        id2label, num_classes = torchvision_labels(name, arch, config, default_classes=21)  # VOC's 21 classes
        state = load_state_dict(state_dict_file(model), name)
        kwargs = dict(config.get("kwargs") or {})
        if any(k.startswith("aux_classifier.") for k in state):
            kwargs.setdefault("aux_loss", True)  # a checkpoint trained with the auxiliary head carries its weights
        try:
            net = torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
            net.load_state_dict(state, strict=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot load model {name!r} ({arch}): {type(exc).__name__}: "
                                 f"{' '.join(_first_line(exc).split())[:500]}") from exc
        net.eval().to(device)
        return LoadedModel(net, None, id2label, device, {"architecture": arch})

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        from torchvision.transforms.functional import normalize, pil_to_tensor

        images = [normalize(pil_to_tensor(img).float().div_(255), IMAGENET_MEAN, IMAGENET_STD) for img in inputs]
        return {"images": images,
                "target_sizes": torch.tensor([[img.height, img.width] for img in inputs], dtype=torch.int64)}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> list[torch.Tensor]:
        images = [img.to(loaded.device) for img in batch["images"]]
        if len({tuple(img.shape) for img in images}) == 1:
            logits = list(loaded.model(torch.stack(images))["out"])
        else:  # images of different sizes: one at a time (the network keeps each image's size)
            logits = [loaded.model(img[None])["out"][0] for img in images]
        return label_maps(self.name, logits, _sizes(batch), len(loaded.id2label))
