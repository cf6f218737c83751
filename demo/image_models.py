"""The demo's image classifiers: tiny ResNets trained here from scratch on the digits set, one per seed, with their
own label names ("0".."9", Zero..Nine)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data import LocalDataset
from demo.classification_sets import DIGIT_WORDS, IMAGE_SIZE
from demo.sources import model_card, set_labels

# name -> (training seed, id2label)
IMAGE_MODELS: dict[str, tuple[int, dict[int, str]]] = {
    "demo/resnet-digits": (0, {i: str(i) for i in range(10)}),
    "demo/resnet-digits-words": (1, {i: w.capitalize() for i, w in enumerate(DIGIT_WORDS)}),
}
IMAGE_EPOCHS = 8
IMAGE_BATCH = 64


def _image_processor():
    from transformers import ViTImageProcessor

    return ViTImageProcessor(
        do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )


def digits_tensors(datasets_dir: Path) -> dict[str, Any]:
    """Pixel values (through the very image processor saved with the models) and labels of both splits."""
    import torch

    ds = LocalDataset.open(datasets_dir / "digits")
    proc = _image_processor()
    out = {}
    for split in ("train", "test"):
        samples = list(ds.samples(split))
        pixels = proc([s.input for s in samples], return_tensors="pt")["pixel_values"]
        out[split] = (pixels, torch.tensor([s.label for s in samples]))
    return out


def train_image_model(data: dict[str, Any], seed: int, id2label: dict[int, str]) -> tuple[Any, dict[str, Any]]:
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
        downsample_in_first_stage=False, num_labels=len(id2label), id2label=dict(id2label),
        label2id={lab: i for i, lab in id2label.items()},
    )
    torch.manual_seed(seed)
    model = ResNetForImageClassification(config)
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    steps_per_epoch = (len(y_train) + IMAGE_BATCH - 1) // IMAGE_BATCH
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=IMAGE_EPOCHS * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(IMAGE_EPOCHS):
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        for start in range(0, len(perm), IMAGE_BATCH):
            b = perm[start:start + IMAGE_BATCH]
            loss = model(pixel_values=x_train[b], labels=y_train[b]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.inference_mode():
        test_acc = (model(pixel_values=x_test).logits.argmax(1) == y_test).float().mean().item()
        train_acc = (model(pixel_values=x_train).logits.argmax(1) == y_train).float().mean().item()
    return model, {"test_accuracy": round(test_acc, 4), "train_accuracy": round(train_acc, 4),
                   "test_samples": len(y_test), "train_samples": len(y_train), "epochs": IMAGE_EPOCHS, "seed": seed}


def _image_card(name: str, id2label: dict[int, str], info: dict[str, Any]) -> str:
    front = {
        "pipeline_tag": "image-classification",
        "library_name": "transformers",
        "license": "apache-2.0",
        "datasets": ["digits"],
        "metrics": ["accuracy"],
        "tags": ["image-classification", "resnet", "digits", "zooeval-demo"],
    }
    labels = ", ".join(f"{i} = {lab}" for i, lab in id2label.items())
    body = f"""
# {name}

A tiny ResNet (Deep Residual Learning, arXiv:1512.03385; one basic block per stage, widths 16 and 32)
trained from scratch for the zooeval demo zoo on the `digits` train split ({info['train_samples']} 32x32 RGB
images; {info['epochs']} epochs, seed {info['seed']}).

Labels: {labels}.

Test accuracy on the demo `digits` test split ({info['test_samples']} images): {info['test_accuracy']:.3f}.

"""
    return model_card(front, body)


def write_image_model(tmp: Path, name: str, model, info: dict[str, Any], id2label: dict[int, str]) -> dict[str, Any]:
    model.save_pretrained(str(tmp), safe_serialization=True)
    set_labels(tmp / "config.json", id2label)
    _image_processor().save_pretrained(str(tmp))
    (tmp / "README.md").write_text(_image_card(name, id2label, info))
    return dict(info)
