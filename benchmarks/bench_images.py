"""Image throughput, side by side in one process (issue 15): the full pipeline task on the demo's timm
MobileNetV2 (the real torchvision ImageNet weights as a timm repo) against a bare torchvision loop on the same
weights, each decoding and preprocessing with the same number of workers, over a few hundred real JPEG
decodes at 224 px.

The images are foolbox's 20 ImageNet photos (512 x 512 JPEG), listed ``--copies`` times as distinct samples
(each decoded every time it is read). zooeval's side: Executor.run on the timm module (its prefetching loader:
one background thread decodes and preprocesses batch i+1 while the model runs batch i; label mapping, top-k,
stored predictions, processing, stored result), timed as run() wall time minus model load and planning. Bare
side: ``torch.utils.data.DataLoader(num_workers=1)`` decoding with PIL and preprocessing with torchvision's
eval transform (resize 256, centre crop 224, normalise), forward, argmax. Alternated, best of ``--repeats``.

Target: pipeline >= 0.95 of the bare loop. Usage: python benchmarks/bench_images.py [--copies 15] [--repeats 3]
[--home DIR] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import processors.classification  # noqa: E402,F401
from benchmarks._common import pipeline_seconds, report, target, temp_mongo  # noqa: E402
from core.data import LocalDataset, write_dataset  # noqa: E402
from core.store import Store  # noqa: E402
from demo.build import TIMM_DEMO_MODEL, build_demo  # noqa: E402
from demo.classification_sets import IMAGENET_DATASET  # noqa: E402
from demo.sources import mobilenet_weights_file  # noqa: E402
from modules.timm_classification import TimmImageClassification  # noqa: E402
from scraper.datasets import register_catalogue, register_datasets  # noqa: E402
from scraper.local import scrape_local  # noqa: E402

BENCH_DATASET = "imagenet-foolbox-bench"
TARGET = 0.95


def make_bench_dataset(source: Path, out: Path, copies: int) -> Path:
    """The 20 images listed ``copies`` times (distinct ids, the same files), ImageNet's classes and synonyms."""
    meta = json.loads((source / "dataset.json").read_text())
    rows = LocalDataset.open(source).rows("test")
    for f in (source / "images").iterdir():
        (out / "images").mkdir(parents=True, exist_ok=True)
        target_file = out / "images" / f.name
        if not target_file.exists():
            target_file.symlink_to(f)
    rows = [{**r, "id": f"{r['id']}-{c}"} for c in range(copies) for r in rows]
    meta = {**meta, "name": BENCH_DATASET, "supported_variants": ["original"]}
    return write_dataset(out, meta, {"test": rows})


class _Files(torch.utils.data.Dataset):
    def __init__(self, root: Path, rows: list[dict], transform) -> None:
        self.root, self.rows, self.transform = root, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.root / self.rows[i]["file"]) as im:
            return self.transform(im.convert("RGB")), self.rows[i]["label"]


def bare_loop(net, dataset: LocalDataset, batch_size: int, workers: int) -> tuple[float, int]:
    """torchvision's eval preprocessing in a DataLoader with ``workers`` processes, forward, argmax."""
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    loader = torch.utils.data.DataLoader(_Files(dataset.root, dataset.rows("test"), tf), batch_size=batch_size,
                                         num_workers=workers)
    t0 = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for x, _ in loader:
            net(x).argmax(-1).tolist()
            n += len(x)
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=15, help="times the 20 images are listed (15: 300 decodes)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--home", default=None)
    ap.add_argument("--quick", action="store_true", help="5 copies (100 decodes), 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.copies, args.repeats = 5, 1
    import torchvision

    torch.set_num_threads(os.cpu_count() or 1)
    home = Path(args.home or tempfile.mkdtemp(prefix="zooeval-bench-home-"))
    build_demo(home, quick=True, log=lambda *a: None)
    bench_dir = make_bench_dataset(home / "datasets" / IMAGENET_DATASET, Path(tempfile.mkdtemp()) / BENCH_DATASET,
                                   args.copies)
    dataset = LocalDataset.open(bench_dir)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(mobilenet_weights_file(), weights_only=True))
    net.eval()
    with temp_mongo() as uri:
        store = Store(uri, "bench_images")
        register_catalogue(store)
        register_datasets(store, bench_dir.parent, log=lambda *a: None)
        scrape_local(store, home / "zoo", log=lambda *a: None)
        model = store.get_model(TIMM_DEMO_MODEL)
        module = TimmImageClassification(dataset=BENCH_DATASET)
        bare_loop(net, dataset, args.batch_size, 1)  # warm-up: page cache, worker start-up code paths
        bare, pipe = [], []
        n = len(dataset.rows("test"))
        for _ in range(args.repeats):
            t, _n = bare_loop(net, dataset, args.batch_size, 1)
            bare.append(n / t)
            pipe.append(n / pipeline_seconds(store, module, model, home, args.batch_size))
        accuracy = store.db.results.find_one()["overall"]["accuracy"]
        ratio = max(pipe) / max(bare)
        report("images", {
            "model": TIMM_DEMO_MODEL, "images": n, "distinct_files": n // args.copies, "batch_size": args.batch_size,
            "decode_workers": 1, "pipeline_accuracy": accuracy,
            "bare_torchvision_instances_per_s": [round(x, 1) for x in bare],
            "pipeline_instances_per_s": [round(x, 1) for x in pipe],
            "note": "pipeline time = run() wall time minus model load and planning; includes warm-up, storage, processing",
            "targets": [target("image pipeline vs bare torchvision DataLoader loop (1 decode worker)", ratio, TARGET,
                               applies=not args.quick)],
        })


if __name__ == "__main__":
    main()
