"""Datasets from the Hugging Face Hub: ``zooeval dataset add hf:<repo>``.

A dataset repo is loaded with the ``datasets`` library (``datasets.load_dataset``, which honours
``HF_ENDPOINT`` and ``HF_TOKEN`` and, from datasets 4 on, never runs a loading script), pinned to the commit sha
the Hub gives for the requested revision, converted into the local dataset format (core.data: dataset.json,
``<split>.jsonl``, image files beside them) under ``<home>/datasets/hf/<org>__<name>[__<config>]/`` and registered
through its task kind, like a local dataset. The registered name is the repo id (``org/name``, with
``:<config>`` when a config is named), so a model card's ``datasets: [org/name]`` says it was trained on it.

The task kind follows from the columns: an ``Image`` column with a mask ``Image`` column (``annotation``, ``label``,
``mask``, ``semantic_segmentation``, ...) is semantic segmentation, its class names read from the repo's
``id2label.json`` (``{"0": "road", ...}``, as the Hub's segmentation datasets publish them; mask value i is class
i, 255 is not scored), converted into the VOC layout (core.voc: images as their original bytes, masks as index
PNGs); a text pair (``sentence1``/``sentence2``, ``text``/``text_pair``, ...)
with a ``ClassLabel`` is pair classification, with a float ``label`` (or ``score``) sentence similarity; an
``Image`` column (``image``/``img``) with a ``ClassLabel`` is image classification; a ``text``/``sentence``
column with a ``ClassLabel`` text classification. Class names are the ``ClassLabel``'s names; rows labelled -1
(the Hub's "no label", as in GLUE's test splits) are left out. Anything else is refused naming the columns.

The commit sha is stored in dataset.json (``hub.revision``), whose bytes are part of the dataset's content
revision (core.data.LocalDataset.revision), so a new commit gives new task ids and stale results are redone.
Adding the same repo, config and revision again does nothing; a new revision replaces the folder (built beside it
and renamed into place, so a failed add leaves the previous one as it was).
"""
from __future__ import annotations

import io
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.data import DataError, write_dataset
from core.voc import write_voc_dataset
from scraper.datasets import dataset_document, read_dataset_meta

HF_PREFIX = "hf:"
#: the folder (under <home>/datasets) that holds the datasets added from the Hub
HUB_FOLDER = "hf"
#: the split names datasets accepts (no slicing such as ``test[:100]``: a split is stored whole)
SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")
REPO_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
CONFIG_NAME = re.compile(r"^[\w.-]+$")

#: text-pair columns, first match wins: (first text, second text)
PAIR_COLUMNS = (("sentence1", "sentence2"), ("text", "text_pair"), ("premise", "hypothesis"),
                ("question1", "question2"), ("question", "sentence"))
TEXT_COLUMNS = ("text", "sentence")
IMAGE_COLUMNS = ("image", "img", "pixel_values")
#: the mask column of a segmentation dataset (an Image column whose pixel values are class indices), first match wins
MASK_COLUMNS = ("annotation", "label", "mask", "semantic_segmentation", "segmentation", "segmentation_mask", "seg_mask")
#: the file of a segmentation dataset repo that names its classes ({"0": "road", ...})
ID2LABEL_FILE = "id2label.json"
SEGMENTATION = "semantic-segmentation"
CLASS_COLUMNS = ("label", "labels", "fine_label")  # preferred, in order, when there are several ClassLabel columns
SCORE_COLUMNS = ("label", "score")  # a sentence-similarity score (a float)
EXPECTED = ("an Image column ('image' or 'img') and a ClassLabel column (image classification); an Image column and "
            f"a mask Image column ({', '.join(repr(c) for c in MASK_COLUMNS[:4])}, ...) with an {ID2LABEL_FILE} naming the "
            "classes (semantic segmentation); a text column "
            "('text' or 'sentence') and a ClassLabel column (text classification); a text pair ("
            + ", ".join(f"'{a}'/'{b}'" for a, b in PAIR_COLUMNS)
            + ") with a ClassLabel column (pair classification) or a float 'label' or 'score' (sentence similarity)")
IMAGE_SUFFIXES = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif"}


@dataclass
class Layout:
    """How a Hub dataset's columns map to a task kind's fields."""

    task: str
    datatype: str
    inputs: dict[str, str]  # zooeval row field (text, text_pair, file) -> dataset column
    label: str  # the label column
    classes: list[str] = field(default_factory=list)  # ClassLabel names ([] for a similarity score)


def feature_type(feature: Any) -> str:
    """A column's type as the error messages name it: ``string``, ``int64``, ``ClassLabel: neg, pos``, ``Image``."""
    from datasets import ClassLabel, Value

    if isinstance(feature, ClassLabel):
        return f"ClassLabel: {', '.join(feature.names[:5])}{', ...' if len(feature.names) > 5 else ''}"
    if isinstance(feature, Value):
        return feature.dtype
    return type(feature).__name__


def describe_columns(features: Any) -> str:
    """The columns and their types, e.g. ``text (string), label (ClassLabel: neg, pos)``."""
    return ", ".join(f"{name} ({feature_type(feature)})" for name, feature in features.items()) or "none"


def layout_for(features: Any, what: str) -> Layout:
    """The task kind and columns of a dataset with these ``datasets.Features``; DataError naming the columns it
    has and what zooeval reads when they fit no task kind."""
    from datasets import ClassLabel, Image, Value

    def is_text(col: str) -> bool:
        return isinstance(features.get(col), Value) and features[col].dtype in ("string", "large_string")

    class_columns = [c for c, f in features.items() if isinstance(f, ClassLabel)]
    preferred = [c for c in CLASS_COLUMNS if c in class_columns]
    class_column = preferred[0] if preferred else class_columns[0] if len(class_columns) == 1 else None
    refuse = f"{what} has the columns {describe_columns(features)}"
    if len(class_columns) > 1 and class_column is None:
        raise DataError(f"{refuse}: several ClassLabel columns ({', '.join(class_columns)}) and none is named "
                        f"{' or '.join(repr(c) for c in CLASS_COLUMNS)}, so which one is the label is unclear")

    def classes() -> list[str]:
        if class_column is None:
            label = features.get("label")
            why = (f"its 'label' column is {feature_type(label)}, not a ClassLabel, so the class names are unknown"
                   if label is not None else "it has no ClassLabel column")
            raise DataError(f"{refuse}: {why}; zooeval reads {EXPECTED}")
        return [str(n) for n in features[class_column].names]

    image_columns = [c for c, f in features.items() if isinstance(f, Image)]
    mask = next((c for c in MASK_COLUMNS if c in image_columns), None)
    if mask is not None:
        others = [c for c in image_columns if c != mask]
        image = next((c for c in IMAGE_COLUMNS if c in others), others[0] if len(others) == 1 else None)
        if image is not None:  # the classes come from the repo's id2label.json (read_id2label)
            return Layout(SEGMENTATION, "image", {"file": image, "mask": mask}, mask)
    pair = next(((a, b) for a, b in PAIR_COLUMNS if is_text(a) and is_text(b)), None)
    if pair is not None:
        inputs = {"text": pair[0], "text_pair": pair[1]}
        score = next((c for c in SCORE_COLUMNS if isinstance(features.get(c), Value)
                      and features[c].dtype.startswith("float")), None)
        if class_column is None and score is not None:
            return Layout("sentence-similarity", "text-pair", inputs, score)
        return Layout("text-pair-classification", "text-pair", inputs, class_column or "", classes())
    image = next((c for c in IMAGE_COLUMNS if isinstance(features.get(c), Image)), None)
    if image is None:
        images = [c for c, f in features.items() if isinstance(f, Image)]
        image = images[0] if len(images) == 1 else None
    if image is not None:
        return Layout("image-classification", "image", {"file": image}, class_column or "", classes())
    text = next((c for c in TEXT_COLUMNS if is_text(c)), None)
    if text is not None:
        return Layout("text-classification", "text", {"text": text}, class_column or "", classes())
    raise DataError(f"{refuse}, which fit no task kind; zooeval reads {EXPECTED}")


def parse_repo(repo: str) -> str:
    """``hf:org/name`` or ``org/name`` -> ``org/name``; DataError for anything that is not a repo id."""
    repo_id = repo[len(HF_PREFIX):] if repo.startswith(HF_PREFIX) else repo
    if not REPO_ID.fullmatch(repo_id) or any(p in (".", "..") for p in repo_id.split("/")):
        raise DataError(f"{repo!r} is not a Hugging Face dataset repo id (hf:<org>/<name>)")
    return repo_id


def dataset_name(repo_id: str, config: str | None) -> str:
    """The registered name: the repo id, with ``:<config>`` when a config is named."""
    return f"{repo_id}:{config}" if config else repo_id


def folder_for(home: Path, repo_id: str, config: str | None) -> Path:
    """``<home>/datasets/hf/<org>__<name>[__<config>]``."""
    return Path(home) / "datasets" / HUB_FOLDER / "__".join([*repo_id.split("/"), *([config] if config else [])])


def hub_endpoint() -> str:
    """The Hub the datasets library downloads from (``HF_ENDPOINT``, read when datasets is imported)."""
    import datasets

    return datasets.config.HF_ENDPOINT.rstrip("/")


def resolve_revision(repo_id: str, revision: str | None, log: Callable[[str], Any]) -> tuple[str, Any]:
    """(commit sha, DatasetInfo) of the dataset repo at ``revision`` (default: main), asked at the endpoint
    ``datasets`` downloads from; DataError saying what is wrong when the repo or revision is not there."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    from scraper.hub_client import HubClient, HubRequestFailed, HubUnreachable

    client = HubClient(endpoint=hub_endpoint(), log=log)
    where = f"{client.endpoint}/datasets/{repo_id}"
    try:
        info = client.call(f"dataset_info {repo_id}", lambda: client.api.dataset_info(repo_id, revision=revision))
    except RevisionNotFoundError:
        raise DataError(f"dataset repo {repo_id!r} has no revision {revision!r} ({where})") from None
    except GatedRepoError:
        raise DataError(f"dataset repo {repo_id!r} is gated: it needs an HF_TOKEN with access ({where})") from None
    except RepositoryNotFoundError:
        raise DataError(f"no dataset repo {repo_id!r} at {client.endpoint}: it does not exist, or it is private and "
                        "HF_TOKEN gives no access to it") from None
    except (HubUnreachable, HubRequestFailed) as exc:
        raise DataError(str(exc)) from None
    except HfHubHTTPError as exc:
        raise DataError(f"dataset repo {repo_id!r}: the Hub answered {exc} ({where})") from None
    return str(info.sha), info


def load_splits(repo_id: str, config: str | None, sha: str, splits: list[str] | None, cache_dir: Path) -> dict[str, Any]:
    """The dataset's splits (all, or the ones named) at commit ``sha``, as ``datasets.Dataset`` objects."""
    import datasets
    from huggingface_hub.errors import GatedRepoError

    what = f"{repo_id}{f' (config {config})' if config else ''} at {sha[:12]}"
    try:
        loaded = datasets.load_dataset(repo_id, config, split=splits, revision=sha, cache_dir=str(cache_dir))
    except GatedRepoError:
        raise DataError(f"dataset repo {repo_id!r} is gated: its files need an HF_TOKEN with access") from None
    except Exception as exc:  # the datasets library's errors name the cause (missing config, unknown split, ...)
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = " ".join(lines[:2])  # the cause and, for a missing config, the configs there are
        raise DataError(f"loading {what} with the datasets library failed: {type(exc).__name__}: {reason}") from None
    if splits is None:
        return dict(loaded)
    return dict(zip(splits, loaded))


def _image_file(cell: dict[str, Any] | None, folder: Path, rel_stem: str, where: str) -> str:
    """Write an Image cell's original bytes as ``rel_stem.<format>``; the relative path written."""
    from PIL import Image as PILImage

    data = (cell or {}).get("bytes")
    if data is None and (cell or {}).get("path"):
        data = Path(cell["path"]).read_bytes()
    if not data:
        raise DataError(f"{where}: no image")
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.verify()
            fmt = img.format or ""
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: the image cannot be decoded: {exc}") from None
    rel = f"{rel_stem}.{IMAGE_SUFFIXES.get(fmt, fmt.lower() or 'img')}"
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return rel


def convert_split(ds: Any, layout: Layout, split: str, folder: Path, what: str) -> tuple[list[dict[str, Any]], int]:
    """The split's rows in zooeval's format (image files written under ``folder/images/<split>/``) and how many
    unlabelled rows were left out."""
    from datasets import Image

    missing = [c for c in [*layout.inputs.values(), layout.label] if c not in ds.features]
    if missing:
        raise DataError(f"{what} split {split!r} lacks the column(s) {missing} the other splits have; it has "
                        f"{describe_columns(ds.features)}")
    image_column = layout.inputs.get("file")
    if image_column is not None:
        ds = ds.cast_column(image_column, Image(decode=False))  # the original bytes, not a re-encoded image
    rows, skipped = [], 0
    for index, record in enumerate(ds):
        where = f"{what} split {split!r} row {index}"
        label = record[layout.label]
        if layout.classes:
            if label is None or label == -1:
                skipped += 1
                continue
            if not isinstance(label, int) or not 0 <= label < len(layout.classes):
                raise DataError(f"{where}: label {label!r} is not a class index 0..{len(layout.classes) - 1}")
        else:
            if label is None or (isinstance(label, float) and math.isnan(label)):
                skipped += 1
                continue
            label = float(label)
        row: dict[str, Any] = {"id": str(index), "label": label}
        for fld, column in layout.inputs.items():
            if fld == "file":
                row["file"] = _image_file(record[column], folder, f"images/{split}/{index:07d}", where)
            elif not isinstance(record[column], str):
                raise DataError(f"{where}: column {column!r} holds {record[column]!r}, not text")
            else:
                row[fld] = record[column]
        rows.append(row)
    return rows, skipped


def read_id2label(repo_id: str, sha: str, cache_dir: Path, what: str) -> list[str]:
    """The class names of a segmentation dataset repo, from its id2label.json at commit ``sha`` (ids 0..n-1);
    DataError saying what is missing or wrong."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(repo_id, ID2LABEL_FILE, repo_type="dataset", revision=sha, cache_dir=str(cache_dir),
                               endpoint=hub_endpoint())
    except EntryNotFoundError:
        raise DataError(f"{what} has an image and a mask column but no {ID2LABEL_FILE} naming its classes "
                        '({"0": "background", "1": ...}, mask value i = class i)') from None
    except Exception as exc:
        raise DataError(f"{what}: cannot download its {ID2LABEL_FILE}: {type(exc).__name__}: {exc}") from None
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        labels = {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise DataError(f"{what}: {ID2LABEL_FILE} is not a JSON object of class id -> name: {exc}") from None
    if sorted(labels) != list(range(len(labels))) or not labels:
        raise DataError(f"{what}: the ids of {ID2LABEL_FILE} are {sorted(labels)[:10]}, not 0..n-1")
    return [labels[i] for i in range(len(labels))]


def convert_segmentation_split(ds: Any, layout: Layout, split: str, folder: Path, what: str) -> list[str]:
    """Write the split's images (original bytes) and masks (index PNGs) into the VOC layout under ``folder``;
    the image ids written (``<split>_<row>``). DataError naming the row for an unreadable mask, a mask of another
    size than its image, or a value that is neither a class index nor 255."""
    import numpy as np
    from datasets import Image
    from PIL import Image as PILImage

    from core.voc import IGNORE_INDEX, IMAGE_DIR, INDEX_MODES, MASK_DIR, save_mask

    image_column, mask_column = layout.inputs["file"], layout.inputs["mask"]
    missing = [c for c in (image_column, mask_column) if c not in ds.features]
    if missing:
        raise DataError(f"{what} split {split!r} lacks the column(s) {missing} the other splits have; it has "
                        f"{describe_columns(ds.features)}")
    ds = ds.cast_column(image_column, Image(decode=False)).cast_column(mask_column, Image(decode=False))
    ids = []
    for index, record in enumerate(ds):
        where = f"{what} split {split!r} row {index}"
        image_id = f"{split}_{index:07d}"
        rel = _image_file(record[image_column], folder, f"{IMAGE_DIR}/{image_id}", where)
        cell = record[mask_column] or {}
        data = cell.get("bytes") or (Path(cell["path"]).read_bytes() if cell.get("path") else None)
        if not data:
            raise DataError(f"{where}: no mask")
        try:
            with PILImage.open(io.BytesIO(data)) as mask_img:
                if mask_img.mode not in INDEX_MODES:
                    raise DataError(f"{where}: the mask is a {mask_img.mode} image; a class mask is a single-channel "
                                    "index image (palette or greyscale)")
                values = np.asarray(mask_img).astype(np.int64)
            with PILImage.open(folder / rel) as img:
                size = img.size
        except (OSError, ValueError) as exc:
            raise DataError(f"{where}: the mask cannot be decoded: {exc}") from None
        if (values.shape[1], values.shape[0]) != size:
            raise DataError(f"{where}: the mask is {values.shape[1]}x{values.shape[0]} pixels but the image {size[0]}x{size[1]}")
        bad = (values != IGNORE_INDEX) & ((values < 0) | (values >= len(layout.classes)))
        if bad.any():
            raise DataError(f"{where}: the mask holds value(s) {sorted(set(values[bad].tolist()))[:10]} outside the "
                            f"{len(layout.classes)} classes of {ID2LABEL_FILE} ({IGNORE_INDEX} = not scored)")
        save_mask(values, folder / MASK_DIR / f"{image_id}.png")
        ids.append(image_id)
    return ids


def hub_dataset_document(folder: Path, final: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The dataset folder's registered document and examples (scraper.datasets.dataset_document: its Hub origin,
    ``hub``, comes with its metadata) with the path it has once moved to ``final``. DataError (or KeyError naming
    the task kinds) when its task kind cannot read it."""
    doc, examples = dataset_document(folder)
    doc["path"] = str(final.resolve())  # the content revision does not depend on where the folder lies
    return doc, examples


def _replace_folder(built: Path, final: Path) -> None:
    """Move the built folder into place; a previous one is removed only once the new one is there."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
        final.rename(old / "dataset")
    built.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def add_hub_dataset(store, home: Path, repo: str, config: str | None = None, split: str | None = None,
                    revision: str | None = None, log: Callable[[str], Any] = print) -> str:
    """Add (or bring up to date) the Hub dataset ``repo`` (``hf:org/name`` or ``org/name``) with ``config``, all its
    splits or ``split`` (added to the ones already there), at ``revision`` (default main). Returns the registered
    dataset name. DataError with the reason when the repo, revision, config or split is not there or its columns
    fit no task kind."""
    if split is not None and not SPLIT_NAME.fullmatch(split):
        raise DataError(f"split {split!r} is not a split name (a whole split such as 'test' is stored; no slicing)")
    if config is not None and (not CONFIG_NAME.fullmatch(config) or config in (".", "..")):
        raise DataError(f"config {config!r} is not a config name (letters, digits, '_', '-', '.')")
    repo_id = parse_repo(repo)
    sha, info = resolve_revision(repo_id, revision, log)
    repo_id = str(info.id or repo_id)  # the Hub's canonical id (a legacy "imdb" is "stanfordnlp/imdb")
    name = dataset_name(repo_id, config)
    final = folder_for(home, repo_id, config)
    previous = read_dataset_meta(final).get("hub") if (final / "dataset.json").is_file() else None
    same = previous is not None and previous.get("revision") == sha
    had = previous.get("splits") if previous else None  # None: every split
    if split is None:
        wanted = None
    elif previous is not None and had is None:
        wanted = None  # every split is wanted already
    else:
        wanted = sorted({split, *(had or [])})
    if same and (had is None or (wanted is not None and set(wanted) <= set(had))):
        registered = store.datasets().get(name)
        if registered and (registered.get("hub") or {}).get("revision") == sha and registered.get("path") == str(final.resolve()):
            log(f"{name}: already at revision {sha[:12]}; nothing to do")
            return name
        doc, examples = hub_dataset_document(final, final)
        store.upsert_dataset(doc, examples)
        log(f"{name}: registered from {final} (revision {sha[:12]})")
        return doc["name"]
    log(f"{name}: loading revision {sha[:12]} ({revision or 'main'}) with the datasets library")
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{final.name}.tmp-"))
    try:
        loaded = load_splits(repo_id, config, sha, wanted, work / "cache")
        what = f"dataset {name!r} at {sha[:12]}"
        first = next(iter(loaded.values()), None)
        if first is None:
            raise DataError(f"{what} has no splits")
        layout = layout_for(first.features, what)
        if layout.task == SEGMENTATION:
            layout.classes = read_id2label(repo_id, sha, work / "cache", what)
        built = work / "dataset"
        rows: dict[str, list[Any]] = {}
        skipped: dict[str, int] = {}
        for split_name, ds in loaded.items():
            if not SPLIT_NAME.fullmatch(split_name):
                raise DataError(f"{what}: split {split_name!r} is not a name zooeval can store as a file")
            if layout.task == SEGMENTATION:
                split_rows, skipped[split_name] = convert_segmentation_split(ds, layout, split_name, built, what), 0
            else:
                split_rows, skipped[split_name] = convert_split(ds, layout, split_name, built, what)
            if split_rows:
                rows[split_name] = split_rows
            else:
                log(f"{name}: split {split_name!r} has no labelled rows; left out")
        if not rows:
            raise DataError(f"{what}: no split has labelled rows")
        for split_name, n in skipped.items():
            if n and split_name in rows:
                log(f"{name}: split {split_name!r}: {n} unlabelled row(s) left out")
        card = getattr(info, "card_data", None) or {}
        meta = {
            "name": name, "task": layout.task, "datatype": layout.datatype, "classes": layout.classes,
            "description": getattr(info, "description", None) or card.get("pretty_name")
            or f"{repo_id} from the Hugging Face Hub",
            "homepage": f"{hub_endpoint()}/datasets/{repo_id}",
            "hub": {"repo": repo_id, "config": config, "revision": sha, "requested_revision": revision or "main",
                    "splits": wanted, "columns": {**layout.inputs, "label": layout.label},
                    "unlabelled_rows_left_out": {s: n for s, n in skipped.items() if n}},
        }
        if layout.task == SEGMENTATION:
            write_voc_dataset(built, {**meta, "hub": {**meta["hub"], "id2label_file": ID2LABEL_FILE}}, rows)
        else:
            write_dataset(built, meta, rows)
        doc, examples = hub_dataset_document(built, final)  # checked before the previous folder is touched
        _replace_folder(built, final)
        store.upsert_dataset(doc, examples)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    counts = ", ".join(f"{s['name']}={s['total']}" for s in doc["splits"])
    log(f"{name}: registered as {layout.task} ({len(layout.classes)} classes; {counts}) at revision {sha[:12]} in {final}")
    return doc["name"]
