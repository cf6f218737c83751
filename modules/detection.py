"""Object detection EvaluationModules: Hugging Face, torchvision, facenet-pytorch's MTCNN and the FiftyOne zoo.

The detection contract (what ``tasks.detection.run_detection`` relies on):

* ``prepare(loaded, images)`` turns PIL RGB images into a batch dict (CPU tensors or lists; it runs in
  the prefetch thread) that carries each image's original size.
* ``forward(loaded, batch)`` returns one dict per image: ``boxes`` (k, 4) float ``[x1, y1, x2, y2]`` in
  pixels of the ORIGINAL image, ``scores`` (k,) and ``labels`` (k,) int, the model's own label ids (keys of
  ``loaded.id2label``), best score first. Every module applies the same fixed conditions (as AI-BMT does
  for COCO mAP): detections scoring below ``score_threshold`` (0.001) are dropped, class-wise NMS at
  ``nms_iou`` (0.65) is applied, and at most ``max_detections`` (100, COCO's maxDets) are kept. These three
  are recorded in ``identity()["params"]``, so changing them changes the task's identity.
* Non-finite model outputs raise ``InferenceError``: they are never silently filtered away.

Weights are only loaded without running code: safetensors, or ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modules.base import EvaluationModule, InferenceError, LoadedModel, ModelLoadError, UnsafeModelError, register_module
from modules.formats import TRANSFORMERS, model_format
from modules.hf import id2label_of, load_transformers

SCORE_THRESHOLD = 0.001
NMS_IOU = 0.65
MAX_DETECTIONS = 100

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DetectionModule(EvaluationModule):
    """What every detection module shares: the fixed post-processing conditions and their identity."""

    task = "object-detection"
    datatype = "image"

    def __init__(
        self,
        dataset: str,
        split: str = "test",
        processors: tuple[str, ...] = (),
        variants: tuple[str, ...] = ("original",),
        seed: int = 0,
        score_threshold: float = SCORE_THRESHOLD,
        nms_iou: float = NMS_IOU,
        max_detections: int = MAX_DETECTIONS,
    ) -> None:
        super().__init__(dataset, split, processors, variants, seed)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)

    def params(self) -> dict[str, Any]:
        """Settings that change the outputs (part of the module's identity)."""
        return {"score_threshold": self.score_threshold, "nms_iou": self.nms_iou, "max_detections": self.max_detections}

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "params": self.params()}

    def postprocess(self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Score threshold, class-wise NMS, best ``max_detections``; raises InferenceError on NaN/inf."""
        from torchvision.ops import batched_nms

        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
        labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1).to(scores.device)
        if not (torch.isfinite(boxes).all() and torch.isfinite(scores).all()):
            raise InferenceError(f"{self.name}: the model produced NaN or infinite boxes or scores")
        keep = scores >= self.score_threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.nms_iou)[: self.max_detections]  # sorted by score
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


# ---------------------------------------------------------------------------------------------- Hugging Face
@register_module
class HFObjectDetection(DetectionModule):
    """``AutoModelForObjectDetection`` + ``AutoImageProcessor`` (DETR, YOLOS, Conditional/Deformable DETR,
    RT-DETR, ...); boxes from the processor's ``post_process_object_detection`` with the original sizes."""

    kind = "hf-object-detection"
    version = 1
    sources = ("huggingface", "local")

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """A Transformers repo (config ``architectures``; a Hub model whose details are not fetched yet is
        taken on trust), never a torchvision state dict or MTCNN of the same source."""
        config = model.get("config") or {}
        if config.get("architecture") or config.get("architectures") == ["MTCNN"] or model_format(model) != TRANSFORMERS:
            return False
        if model.get("source") == "local" and not config.get("architectures"):
            return False
        return super().accepts(model, datasets)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        net, pre = load_transformers(model, "AutoModelForObjectDetection", "AutoImageProcessor", device)
        if not hasattr(pre, "post_process_object_detection"):
            raise ModelLoadError(f"the image processor of {model['name']!r} ({type(pre).__name__}) has no "
                                 "post_process_object_detection")
        return LoadedModel(net, pre, id2label_of(net), device)

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        batch = dict(loaded.preprocessor(images=inputs, return_tensors="pt"))
        batch["target_sizes"] = torch.tensor([[img.height, img.width] for img in inputs], dtype=torch.int64)
        return batch

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        batch = dict(batch)
        target_sizes = batch.pop("target_sizes")
        out = loaded.model(**batch)
        for name in ("logits", "pred_boxes"):
            value = getattr(out, name, None)
            if value is not None and not torch.isfinite(value).all():
                raise InferenceError(f"{self.name}: the model produced NaN or infinite {name}")
        results = loaded.preprocessor.post_process_object_detection(
            out, threshold=self.score_threshold, target_sizes=target_sizes
        )
        return [self.postprocess(r["boxes"], r["scores"], r["labels"]) for r in results]


# ---------------------------------------------------------------------------------------------- torchvision
def state_dict_file(model: dict[str, Any]) -> Path:
    """The weight file of a torchvision model document: ``weights_path``, or ``path`` (a file, or a folder
    with exactly one weight file; safetensors preferred)."""
    where = model.get("weights_path") or model.get("path")
    if not where:
        raise ModelLoadError(f"model {model.get('name')!r} names no weight file (weights_path or path)")
    path = Path(where)
    if path.is_dir():
        for suffixes in ((".safetensors",), (".pth", ".pt")):
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ModelLoadError(f"model {model.get('name')!r}: {path} holds several weight files {[p.name for p in found]}")
        raise ModelLoadError(f"model {model.get('name')!r}: no .safetensors/.pth/.pt file in {path}")
    if not path.is_file():
        raise ModelLoadError(f"model {model.get('name')!r}: weight file {path} is missing")
    return path


def torchvision_labels(name: str, arch: str, config: dict[str, Any], default_classes: int) -> tuple[dict[int, str], int]:
    """A torchvision model's (id2label, number of classes): ``config.id2label`` and ``num_classes``, or else the
    categories of the architecture's default weights when their count matches; ModelLoadError otherwise."""
    import torchvision

    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    num_classes = int(config.get("num_classes") or len(id2label) or default_classes)
    if not id2label:
        try:
            categories = torchvision.models.get_model_weights(arch).DEFAULT.meta["categories"]
        except Exception:
            categories = []
        if len(categories) != num_classes:
            raise ModelLoadError(f"model {name!r} declares no labels (config.id2label) for its {num_classes} classes")
        id2label = dict(enumerate(categories))
    if sorted(id2label) != list(range(num_classes)):
        raise ModelLoadError(f"model {name!r}: id2label keys {sorted(id2label)[:10]} are not 0..{num_classes - 1}")
    return id2label, num_classes


def load_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """A plain state dict (name -> tensor) from safetensors or a ``weights_only`` torch file; anything else
    (a pickled module, objects that need code to unpickle) is refused."""
    if path.name.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise ModelLoadError(f"cannot read the weights of {name!r} ({path.name}): "
                                 f"{type(exc).__name__}: {_first_line(exc)}") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        import pickle

        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
            raise UnsafeModelError(
                f"the weights of {name!r} ({path.name}) are not a plain state dict: unpickling them would run "
                f"code or build arbitrary objects, which zooeval refuses ({_first_line(exc)[:300]})"
            ) from exc
        raise ModelLoadError(f"cannot read the weights of {name!r} ({path.name}): "
                             f"{type(exc).__name__}: {_first_line(exc)}") from exc
    if isinstance(obj, dict) and set(obj) & {"state_dict", "model"} and len(obj) <= 4:
        inner = obj.get("state_dict", obj.get("model"))
        if isinstance(inner, dict):
            obj = inner
    if (not isinstance(obj, dict) or not obj
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())):
        raise UnsafeModelError(
            f"the weights of {name!r} ({path.name}) are not a plain state dict (name -> tensor), "
            f"got {type(obj).__name__}; save model.state_dict() instead"
        )
    return obj


@register_module
class TorchvisionDetection(DetectionModule):
    """A torchvision detection architecture (``torchvision.models.get_model``) with weights from a local
    state dict. The model document names ``config.architecture`` (e.g. "fasterrcnn_resnet50_fpn"),
    ``config.num_classes`` and ``config.id2label`` (index -> name, 0 being the background); with neither, a
    91-class model takes the COCO category names from torchvision's own weights metadata (no download)."""

    kind = "torchvision-object-detection"
    version = 1
    sources = ("torchvision", "local")

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """Only models that name a torchvision architecture (config ``architecture``)."""
        if not (model.get("config") or {}).get("architecture"):
            return False
        return super().accepts(model, datasets)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        import torchvision

        name = model.get("name", "?")
        config = model.get("config") or {}
        arch = config.get("architecture") or model.get("architecture")
        if not arch:
            raise ModelLoadError(f"model {name!r} names no torchvision architecture (config.architecture)")
        if arch not in torchvision.models.list_models(module=torchvision.models.detection):
            raise ModelLoadError(f"model {name!r}: {arch!r} is not a torchvision detection architecture")
        id2label, num_classes = torchvision_labels(name, arch, config, default_classes=91)  # COCO's 91 ids
        state = load_state_dict(state_dict_file(model), name)
        try:
            net = torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes,
                                               **(config.get("kwargs") or {}))
            net.load_state_dict(state, strict=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot load model {name!r} ({arch}): {type(exc).__name__}: {_first_line(exc)[:500]}") from exc
        self._set_conditions(net)
        net.eval().to(device)
        return LoadedModel(net, None, id2label, device, {"architecture": arch})

    def _set_conditions(self, net: torch.nn.Module) -> None:
        """The module's score threshold, NMS IoU and detections per image, on the model itself."""
        heads = getattr(net, "roi_heads", None)
        if heads is not None and hasattr(heads, "score_thresh"):  # Faster/Mask/Keypoint R-CNN
            heads.score_thresh, heads.nms_thresh, heads.detections_per_img = (self.score_threshold, self.nms_iou,
                                                                              self.max_detections)
        elif hasattr(net, "score_thresh"):  # RetinaNet, FCOS, SSD
            net.score_thresh, net.nms_thresh, net.detections_per_img = self.score_threshold, self.nms_iou, self.max_detections

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        from torchvision.transforms.functional import pil_to_tensor

        return {"images": [pil_to_tensor(img).float().div_(255) for img in inputs]}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        images = [img.to(loaded.device) for img in batch["images"]]
        bad: list[str] = []

        def check(_module, _inputs, output) -> None:
            tensors = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else [output]
            if any(isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all() for t in tensors):
                bad.append(type(_module).__name__)

        hooks = [m.register_forward_hook(check) for m in self._checked_parts(loaded.model)]
        try:
            outputs = loaded.model(images)
        finally:
            for h in hooks:
                h.remove()
        if bad:
            raise InferenceError(f"{self.name}: the model produced NaN or infinite values (in {bad[0]})")
        return [self.postprocess(o["boxes"], o["scores"], o["labels"]) for o in outputs]

    @staticmethod
    def _checked_parts(net: torch.nn.Module) -> list[torch.nn.Module]:
        """The parts whose outputs are checked for NaN: the backbone and the box predictor / head (the
        models' own score thresholds would silently drop NaN scores)."""
        parts = [getattr(net, "backbone", None), getattr(net, "head", None),
                 getattr(getattr(net, "roi_heads", None), "box_predictor", None)]
        return [p for p in parts if isinstance(p, torch.nn.Module)]


# ---------------------------------------------------------------------------------------------- MTCNN
MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")


def mtcnn_weights_dir() -> Path:
    """facenet-pytorch's own MTCNN weight folder (inside the installed wheel), found without importing it."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.origin:
        raise ModelLoadError("facenet-pytorch is not installed (pip install --no-deps facenet-pytorch==2.6.0)")
    return Path(spec.origin).resolve().parent / "data"


def mtcnn_model_doc() -> dict[str, Any]:
    """The model document of the MTCNN face detector shipped in the facenet-pytorch wheel (source "pypi")."""
    from importlib.metadata import version

    folder = mtcnn_weights_dir()
    h = hashlib.sha256()
    for f in MTCNN_FILES:
        h.update(f.encode())
        h.update((folder / f).read_bytes())
    return {
        "_id": "pypi/facenet-pytorch/mtcnn",
        "name": "facenet-pytorch/mtcnn",
        "source": "pypi",
        "package": "facenet-pytorch",
        "package_version": version("facenet-pytorch"),
        "path": str(folder),
        "task": "object-detection",
        "datasets": ["wider_face", "celeba"],
        "tags": ["face-detection", "mtcnn"],
        "library": "facenet-pytorch",
        "license": "MIT",
        "files": {f: (folder / f).stat().st_size for f in MTCNN_FILES},
        "config": {"architectures": ["MTCNN"], "id2label": {"0": "face"}},
        "revision": h.hexdigest()[:40],
        "references": ["arxiv:1604.02878"],
        "notes": [],
    }


@register_module
class MTCNNFaceDetection(DetectionModule):
    """facenet-pytorch's MTCNN (Zhang et al. 2016), weights pnet/rnet/onet.pt loaded with
    ``weights_only=True`` from the model's ``path`` (default: the installed wheel). One label, "face";
    ``keep_all=True``; the score is MTCNN's final-stage face probability. ``min_face_size`` is 40 px: the
    faces datasets here are 64 px and larger; smaller faces would need a lower value (and more time)."""

    kind = "mtcnn-face-detection"
    default = False  # MTCNN detects only faces: it runs where a dataset names it (dataset.json "modules")
    version = 1
    sources = ("pypi", "local")

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """Only MTCNN weights (config ``architectures`` ["MTCNN"])."""
        if (model.get("config") or {}).get("architectures") != ["MTCNN"]:
            return False
        return super().accepts(model, datasets)

    def __init__(self, dataset: str, *args: Any, min_face_size: int = 40,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709, **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "min_face_size": self.min_face_size, "thresholds": list(self.thresholds),
                "factor": self.factor}

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise ModelLoadError(f"cannot load {model.get('name')!r}: facenet-pytorch is not importable ({exc})") from exc
        folder = Path(model.get("path") or mtcnn_weights_dir())
        missing = [f for f in MTCNN_FILES if not (folder / f).is_file()]
        if missing:
            raise ModelLoadError(f"model {model.get('name')!r}: MTCNN weight files {missing} are missing in {folder}")
        net = MTCNN(keep_all=True, min_face_size=self.min_face_size, thresholds=list(self.thresholds),
                    factor=self.factor, post_process=False, select_largest=False, device=device)
        for part, f in zip((net.pnet, net.rnet, net.onet), MTCNN_FILES):
            part.load_state_dict(load_state_dict(folder / f, model.get("name", "mtcnn")), strict=True)
        net.eval().to(device)
        return LoadedModel(net, None, {0: "face"}, device)

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return {"images": [np.asarray(img.convert("RGB")) for img in inputs]}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        out = []
        for img in batch["images"]:  # MTCNN batches only equal-size images: one at a time
            boxes, probs = loaded.model.detect(img)
            if boxes is None:
                boxes, probs = torch.zeros((0, 4)), torch.zeros(0)
            probs = torch.as_tensor(np.asarray(probs, dtype=np.float32)) if not isinstance(probs, torch.Tensor) else probs
            boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
            out.append(self.postprocess(boxes, probs, torch.zeros(len(probs), dtype=torch.int64)))
        return out


# ---------------------------------------------------------------------------------------------- FiftyOne
def detections_from_fiftyone(detections: Any, width: int, height: int, label2id: dict[str, int]) -> dict[str, torch.Tensor]:
    """A FiftyOne ``Detections`` (relative ``[x, y, w, h]`` in [0, 1]) as absolute xyxy boxes, scores and
    model label ids. A detection without confidence gets 1.0; a label the model does not declare is an error."""
    items = list(getattr(detections, "detections", None) or [])
    boxes, scores, labels = [], [], []
    for d in items:
        if d.label not in label2id:
            raise InferenceError(f"the FiftyOne model returned label {d.label!r}, which is not among its classes")
        x, y, w, h = (float(v) for v in d.bounding_box)
        boxes.append([x * width, y * height, (x + w) * width, (y + h) * height])
        scores.append(1.0 if d.confidence is None else float(d.confidence))
        labels.append(label2id[d.label])
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


@register_module
class FiftyOneDetection(DetectionModule):
    """A FiftyOne zoo detector (``fiftyone.zoo.load_zoo_model(name)``) run through FiftyOne's own
    ``predict_all``; its ``Detections`` are converted to absolute boxes. Weights must already be on disk
    (see modules.fiftyone_zoo): nothing is downloaded unless ZOOEVAL_FIFTYONE_DOWNLOAD=1."""

    kind = "fiftyone-object-detection"
    version = 1
    sources = ("fiftyone",)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        from modules.fiftyone_zoo import load_fiftyone_model

        name = model["name"]
        fo_model, _ = load_fiftyone_model(model, device, what="detection model", confidence_thresh=self.score_threshold)
        classes = [str(c) for c in (getattr(fo_model, "classes", None) or [])]
        if not classes:
            raise ModelLoadError(f"FiftyOne model {name!r} declares no classes")
        id2label = dict(enumerate(classes))
        label2id: dict[str, int] = {}
        for i, c in id2label.items():
            label2id.setdefault(c, i)
        return LoadedModel(fo_model, None, id2label, device, {"label2id": label2id})

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return {"images": [np.asarray(img.convert("RGB")) for img in inputs]}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        images = batch["images"]
        # FiftyOne's TorchImageModel stacks a batch into one tensor (and reads one frame size for it): images
        # of different sizes through transforms that keep each image's size (``ragged_batches``, e.g. every
        # torchvision detector of the zoo) go one at a time, as FiftyOne's own apply_model does
        ragged = getattr(loaded.model, "ragged_batches", True) and len({img.shape[:2] for img in images}) > 1
        with loaded.model:
            if ragged:
                predictions = [loaded.model.predict_all([img])[0] for img in images]
            else:
                predictions = loaded.model.predict_all(images)
        out = []
        for img, dets in zip(images, predictions):
            height, width = img.shape[:2]
            d = detections_from_fiftyone(dets, width, height, loaded.extra["label2id"])
            out.append(self.postprocess(d["boxes"], d["scores"], d["labels"]))
        return out



