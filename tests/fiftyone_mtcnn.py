"""A test-only FiftyOne zoo entrypoint: facenet-pytorch's real pretrained MTCNN as a torchvision-style detector.

A custom zoo manifest (tests/test_fiftyone_detection.py) names :func:`mtcnn_detector` as the
``entrypoint_fcn`` of a ``fiftyone.utils.torch.TorchImageModel`` with FiftyOne's own
``DetectorOutputProcessor``, so FiftyOne builds, preprocesses (its default transforms: ``ToPILImage`` +
``ToTensor``, no resizing) and post-processes the model exactly as it does a zoo Faster R-CNN.

The weights are one state-dict file in FiftyOne's model zoo folder (the zoo entry's ``base_filename``), holding
``pnet.*``, ``rnet.*`` and ``onet.*`` tensors (the three files of the facenet-pytorch wheel, see
:func:`write_weights`), read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

PARTS = ("pnet", "rnet", "onet")


def write_weights(path: str | os.PathLike) -> Path:
    """The MTCNN weights of the installed facenet-pytorch wheel as one state dict file at ``path``."""
    from modules.detection import load_state_dict, mtcnn_weights_dir

    folder = mtcnn_weights_dir()
    state = {}
    for part in PARTS:
        for key, value in load_state_dict(folder / f"{part}.pt", "mtcnn").items():
            state[f"{part}.{key}"] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


class MTCNNDetector(torch.nn.Module):
    """MTCNN with the torchvision detection interface: ``forward(images)`` takes a float batch (N, 3, H, W)
    in [0, 1] (FiftyOne's ``ToTensor`` output) and returns, per image, ``{"boxes": (k, 4) xyxy pixels,
    "labels": (k,) int64 (all 0, "face"), "scores": (k,)}``. Settings as zooeval's MTCNNFaceDetection."""

    def __init__(self, state: dict[str, torch.Tensor], min_face_size: int = 40,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> None:
        super().__init__()
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, min_face_size=int(min_face_size), thresholds=[float(t) for t in thresholds],
                           factor=float(factor), post_process=False, select_largest=False, device="cpu")
        for part in PARTS:
            sub = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}
            getattr(self.mtcnn, part).load_state_dict(sub, strict=True)

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = []
        for img in images:
            # back to the uint8 HWC array the image was (ToTensor divided by 255): MTCNN's own input format
            hwc = (img.detach().float().cpu() * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            boxes, probs = self.mtcnn.detect(np.ascontiguousarray(hwc))
            if boxes is None:
                boxes, probs = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
            boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
            scores = torch.as_tensor(np.asarray(probs, dtype=np.float32)).reshape(-1)
            out.append({"boxes": boxes, "labels": torch.zeros(len(scores), dtype=torch.int64), "scores": scores})
        return out


def mtcnn_detector(weights_file: str, **kwargs) -> MTCNNDetector:
    """The zoo entrypoint: ``weights_file`` is found in FiftyOne's model zoo folder (or is an absolute path)."""
    import fiftyone as fo

    path = Path(weights_file)
    if not path.is_absolute():
        path = Path(fo.config.model_zoo_dir) / path
    state = torch.load(path, map_location="cpu", weights_only=True)
    return MTCNNDetector(state, **kwargs)
