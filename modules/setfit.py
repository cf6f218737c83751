"""SetFit text classifiers: a sentence-transformers body plus a separate classification head.

A SetFit repo holds a sentence-transformers model (``modules.json``, the Transformer's ``config.json`` and
weights, ``1_Pooling/config.json``, optionally ``2_Normalize``), ``config_setfit.json`` (``labels``,
``normalize_embeddings``) and the head. The body is loaded with the sentence-transformers library
(``trust_remote_code=False``, safetensors preferred, pickle checkpoints only through
``torch.load(weights_only=True)``, every parameter from the checkpoint), the revision pinned for Hub models.

The head: SetFit (every release up to 1.2.0, ``SetFitModel._save_pretrained``) writes it only as
``model_head.pkl``, a joblib pickle of a scikit-learn ``LogisticRegression`` or of its torch ``SetFitHead``.
Unpickling it could run arbitrary code, so zooeval never opens it: such a repo is refused
(``UnsafeModelError``). The head is evaluated when published in a safe form (layouts defined here, see
``HEAD_LAYOUTS``):

* ``model_head.safetensors`` (preferred), or ``model_head.pt`` / ``.pth`` / ``.bin`` holding a plain dict
  of tensors (read with ``torch.load(weights_only=True)``; its non-tensor str/int/float/bool values are the
  settings), with either
* a scikit-learn ``LogisticRegression``: ``coef_`` (rows, dim), optional ``intercept_`` (rows,) and
  ``classes_`` (int, the label index of each output column); one row is a binary head (outputs
  ``[0, z]``, whose softmax is ``[1 - sigmoid(z), sigmoid(z)]``), more rows a multinomial one
  (``softmax(XW^T + b)``); the setting ``multi_class: ovr`` marks a one-vs-rest head (old scikit-learn,
  liblinear), whose probabilities are the row sigmoids normalised to sum 1 (outputs ``logsigmoid(z)``);
* SetFit's ``SetFitHead``: its state dict ``linear.weight`` (labels, dim), optional ``linear.bias``, and
  the settings ``temperature`` (default 1.0) and ``eps`` (default 1e-5) (outputs
  ``linear(x) / (temperature + eps)``, as ``SetFitHead.forward``); a ``multitarget`` head (multi-label)
  is refused.

Safetensors settings are the file's string metadata. The head sees the body's embeddings, L2-normalised
when ``config_setfit.json`` says ``normalize_embeddings`` (as ``SetFitModel.encode``). Labels come from
``config_setfit.json`` ``labels`` (output column i is ``labels[classes_[i]]``), else ``LABEL_<class>``.
"""
from __future__ import annotations

import glob
import json
import pickle
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from modules.base import (
    EvaluationModule,
    IncompatibleLibraryError,
    IncompleteWeightsError,
    LoadedModel,
    ModelLoadError,
    UnsafeModelError,
    register_module,
)
from modules.formats import SETFIT, model_format
from modules.hf import (
    FOREIGN_WEIGHTS,
    PICKLE_SUFFIXES,
    PICKLE_WEIGHTS,
    SAFE_TORCH_LOAD,
    check_complete,
    check_local_config,
    check_pickle_weights,
    torch_version,
)

SETFIT_CONFIG = "config_setfit.json"
PICKLE_HEAD = "model_head.pkl"  # what SetFit writes (joblib.dump): never downloaded, never opened
SAFE_HEAD = "model_head.safetensors"
TORCH_HEADS = ("model_head.pt", "model_head.pth", "model_head.bin")
HEAD_LAYOUTS = {
    "logistic-regression": ("coef_", "intercept_", "classes_"),
    "setfit-head": ("linear.weight", "linear.bias"),
}
#: repo files a SetFit evaluation never needs (other frameworks' weights, pickles that are not checkpoints)
UNUSED_SUFFIXES = (".pkl", ".joblib", ".onnx_data", ".ot", ".gguf", *FOREIGN_WEIGHTS)
UNUSED_FOLDERS = ("onnx/", "openvino/")
SETFIT_HEAD_EPS = 1e-5  # SetFitHead's default eps


@dataclass(frozen=True)
class SafeHead:
    """A SetFit classification head read from a safe file: ``logits(embeddings)`` has the head's
    ``predict_proba`` as its softmax."""

    layout: str  # a key of HEAD_LAYOUTS
    file: str
    weight: torch.Tensor  # (rows, dim)
    bias: torch.Tensor  # (rows,)
    declared_classes: tuple[int, ...] | None = None  # classes_: the label index of each output column
    one_vs_rest: bool = False  # logistic regression only
    divisor: float = 1.0  # SetFitHead: temperature + eps

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def columns(self) -> int:
        """Number of outputs (a one-row logistic regression is binary: two)."""
        return 2 if self.layout == "logistic-regression" and self.weight.shape[0] == 1 else int(self.weight.shape[0])

    @property
    def classes(self) -> tuple[int, ...]:
        """The label index of each output column."""
        return self.declared_classes if self.declared_classes is not None else tuple(range(self.columns))

    def to(self, device: str) -> "SafeHead":
        return replace(self, weight=self.weight.to(device), bias=self.bias.to(device))

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(n, len(classes)) scores whose softmax is the head's class probabilities."""
        z = embeddings.to(self.weight.dtype) @ self.weight.T + self.bias
        if self.layout == "setfit-head":
            return z / self.divisor
        if self.weight.shape[0] == 1:
            return torch.cat([torch.zeros_like(z), z], dim=-1)
        return torch.nn.functional.logsigmoid(z) if self.one_vs_rest else z


@dataclass
class SetFitClassifier:
    """The loaded parts of a SetFit model."""

    body: Any  # sentence_transformers.SentenceTransformer
    head: SafeHead
    normalize_embeddings: bool


# -- the repo's files -------------------------------------------------------------------------------
def repo_files(model: dict[str, Any]) -> list[str]:
    """The repo's file paths (relative, "/"-separated): a local folder's files, or the Hub's listing at the
    pinned revision."""
    if model.get("path"):
        root = Path(model["path"])
        if not root.is_dir():
            raise ModelLoadError(f"model {model['name']!r}: the folder {root} does not exist")
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not model.get("revision"):
        raise ModelLoadError(f"model {model['name']!r} has no stored revision to pin; scrape it again")
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(model["name"], revision=model["revision"])
    except Exception as exc:
        raise ModelLoadError(f"cannot list the files of model {model['name']!r} at revision {model['revision']}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from exc
    return sorted(s.rfilename for s in info.siblings or [])


def choose_head(model: dict[str, Any], files: list[str]) -> str:
    """The head file to read: safetensors first, then a torch state dict; a pickle-only head is refused."""
    if SAFE_HEAD in files:
        return SAFE_HEAD
    for name in TORCH_HEADS:
        if name in files:
            return name
    if PICKLE_HEAD in files:
        raise UnsafeModelError(
            f"model {model['name']!r}: the SetFit head {PICKLE_HEAD} is a pickle (joblib); zooeval never unpickles "
            "repo files, because loading a pickle can run arbitrary code. Publish the head as safetensors "
            f"({SAFE_HEAD}: coef_/intercept_[/classes_] for a LogisticRegression head, linear.weight/linear.bias "
            "for a SetFitHead) to have it evaluated")
    raise IncompleteWeightsError(
        f"model {model['name']!r} has no SetFit classification head ({SAFE_HEAD}, {', '.join(TORCH_HEADS)} or "
        f"{PICKLE_HEAD}); SetFit would start from an untrained head, so there is nothing to evaluate")


def files_to_fetch(files: list[str], head: str) -> list[str]:
    """The files a load reads: everything but pickles that are not checkpoints, other frameworks' weights,
    and pickle checkpoints beside safetensors in the same folder; plus the chosen head."""
    safetensors_dirs = {str(PurePosixPath(f).parent) for f in files
                        if f.endswith(".safetensors") and not f.startswith("model_head.")}
    keep = []
    for f in files:
        if f == head:
            keep.append(f)
        elif f.endswith(UNUSED_SUFFIXES) or f.startswith(UNUSED_FOLDERS) or f.startswith("model_head."):
            continue
        elif f.endswith(PICKLE_SUFFIXES) and str(PurePosixPath(f).parent) in safetensors_dirs:
            continue
        else:
            keep.append(f)
    return keep


def fetch(model: dict[str, Any], files: list[str]) -> Path:
    """The local folder holding ``files``: the model's own folder, or a snapshot of the pinned Hub revision."""
    if model.get("path"):
        return Path(model["path"])
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model["name"], revision=model["revision"],
                                      allow_patterns=[glob.escape(f) for f in files]))
    except Exception as exc:
        raise ModelLoadError(f"cannot download model {model['name']!r} at revision {model['revision']}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from exc


# -- config_setfit.json -----------------------------------------------------------------------------
def read_setfit_config(model: dict[str, Any], root: Path) -> tuple[list[str] | None, bool]:
    """(labels or None, normalize_embeddings) from config_setfit.json; (None, False), SetFit's defaults,
    when the repo has none."""
    path = root / SETFIT_CONFIG
    if not path.is_file():
        return None, False
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {model['name']!r}: {SETFIT_CONFIG} is unreadable: {exc}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"model {model['name']!r}: {SETFIT_CONFIG} is not a JSON object")
    labels, normalize = config.get("labels"), config.get("normalize_embeddings", False)
    if labels is not None and (not isinstance(labels, list) or not labels
                               or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in labels)):
        raise ModelLoadError(f"model {model['name']!r}: {SETFIT_CONFIG} labels must be a non-empty list of names, "
                             f"not {labels!r}")
    if not isinstance(normalize, bool):
        raise ModelLoadError(f"model {model['name']!r}: {SETFIT_CONFIG} normalize_embeddings must be true or false, "
                             f"not {normalize!r}")
    return ([str(x) for x in labels] if labels is not None else None), normalize


# -- the head -------------------------------------------------------------------------------------
def read_head_file(model: dict[str, Any], path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, settings) of a head file: safetensors (settings = its metadata) or a torch state dict read
    with ``torch.load(weights_only=True)`` (settings = its plain str/int/float/bool values)."""
    name = path.name
    if name.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
        except Exception as exc:
            raise ModelLoadError(f"model {model['name']!r}: cannot read the head {name}: {type(exc).__name__}: "
                                 f"{_first_line(exc)}") from exc
    if torch_version() < SAFE_TORCH_LOAD:
        raise UnsafeModelError(f"model {model['name']!r}: the head {name} is a pickle and torch {torch.__version__} "
                               "cannot load it safely (torch.load(weights_only=True) needs torch >= 2.6)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise UnsafeModelError(
            f"model {model['name']!r}: the head {name} holds objects other than tensors and plain values, so loading "
            f"it could run arbitrary code; refused (torch.load(weights_only=True): {_first_line(exc)[:300]}). "
            f"Publish the head as safetensors ({SAFE_HEAD})") from None
    except Exception as exc:
        raise ModelLoadError(f"model {model['name']!r}: cannot read the head {name}: {type(exc).__name__}: "
                             f"{_first_line(exc)}") from exc
    if not isinstance(state, dict):
        raise ModelLoadError(f"model {model['name']!r}: the head {name} is not a dict of tensors "
                             f"({type(state).__name__})")
    tensors, settings = {}, {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[str(key)] = value
        elif isinstance(value, (str, int, float, bool)):
            settings[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
        else:
            raise ModelLoadError(f"model {model['name']!r}: the head {name} holds {key!r} of type "
                                 f"{type(value).__name__}; expected tensors and plain settings")
    return tensors, settings


def parse_head(model_name: str, file: str, tensors: dict[str, torch.Tensor], settings: dict[str, str]) -> SafeHead:
    """A SafeHead from a head file's tensors and settings, in one of the HEAD_LAYOUTS."""
    what = f"model {model_name!r}: the head {file}"
    keys = set(tensors)
    layout = next((name for name, allowed in HEAD_LAYOUTS.items() if allowed[0] in keys and keys <= set(allowed)), None)
    if layout is None:
        expected = "; ".join(f"{name}: {', '.join(allowed)}" for name, allowed in HEAD_LAYOUTS.items())
        raise ModelLoadError(f"{what} holds the tensors {sorted(keys)}, which is no known head layout ({expected})")
    weight_key, bias_key = HEAD_LAYOUTS[layout][:2]
    weight = tensors[weight_key]
    if weight.ndim != 2 or not weight.is_floating_point() or weight.shape[0] == 0:
        raise ModelLoadError(f"{what}: {weight_key} must be a 2-d float tensor, not {weight.dtype} {tuple(weight.shape)}")
    # computed in the stored precision, as scikit-learn / torch do (half precision is widened to float32)
    dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
    weight = weight.to(dtype)
    rows = weight.shape[0]
    bias = tensors.get(bias_key, torch.zeros(rows, dtype=dtype))
    if bias.ndim == 0 or not bias.is_floating_point() or tuple(bias.shape) != (rows,):
        raise ModelLoadError(f"{what}: {bias_key} must be a float tensor of shape ({rows},), not {bias.dtype} "
                             f"{tuple(bias.shape)}")
    bias = bias.to(dtype)
    if layout == "setfit-head":
        if settings.get("multitarget", "false").lower() not in ("false", "0"):
            raise ModelLoadError(f"{what} is a multi-target (multi-label) SetFitHead; zooeval evaluates single-label "
                                 "classification")
        if rows < 2:
            raise ModelLoadError(f"{what}: linear.weight has {rows} row; a SetFitHead has at least 2 outputs")
        temperature = _float_setting(what, settings, "temperature", 1.0)
        eps = _float_setting(what, settings, "eps", SETFIT_HEAD_EPS)
        if temperature + eps <= 0:
            raise ModelLoadError(f"{what}: temperature + eps must be positive, not {temperature + eps}")
        return SafeHead(layout, file, weight, bias, divisor=temperature + eps)
    multi_class = settings.get("multi_class", "multinomial").lower()
    if multi_class not in ("multinomial", "ovr"):
        raise ModelLoadError(f"{what}: multi_class {multi_class!r} is not 'multinomial' or 'ovr'")
    columns = 2 if rows == 1 else rows
    classes = None
    if "classes_" in tensors:
        raw = tensors["classes_"]
        if raw.is_floating_point() or raw.is_complex() or raw.ndim != 1 or raw.shape[0] != columns:
            raise ModelLoadError(f"{what}: classes_ must be a 1-d integer tensor of {columns} label indices, not "
                                 f"{raw.dtype} {tuple(raw.shape)}")
        classes = tuple(int(c) for c in raw.tolist())
        if len(set(classes)) != len(classes) or min(classes) < 0:
            raise ModelLoadError(f"{what}: classes_ {list(classes)} must be distinct non-negative label indices")
    return SafeHead(layout, file, weight, bias, classes, one_vs_rest=multi_class == "ovr" and rows > 1)


def head_labels(model_name: str, head: SafeHead, labels: list[str] | None, dim: int | None) -> dict[int, str]:
    """id2label of the head's output columns; checks that the head fits the body and the label list."""
    what = f"model {model_name!r}: the head {head.file}"
    if dim is not None and head.dim != dim:
        raise ModelLoadError(f"{what} takes {head.dim}-dimensional embeddings but the body produces {dim}-dimensional "
                             "ones; the head does not belong to this body")
    if labels is None:
        return {i: f"LABEL_{c}" for i, c in enumerate(head.classes)}
    if head.declared_classes is None and head.columns != len(labels):
        raise ModelLoadError(f"{what} has {head.columns} outputs but {SETFIT_CONFIG} lists {len(labels)} labels "
                             f"({', '.join(labels[:10])})")
    bad = [c for c in head.classes if c >= len(labels)]
    if bad:
        raise ModelLoadError(f"{what}: classes_ {bad} are not indices into the {len(labels)} labels of {SETFIT_CONFIG}")
    return {i: labels[c] for i, c in enumerate(head.classes)}


# -- the body -------------------------------------------------------------------------------------
def read_modules(model: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """modules.json of a sentence-transformers body, checked: only sentence_transformers' own module classes
    (anything else is custom code) and paths inside the repo."""
    path = root / "modules.json"
    if not path.is_file():
        raise ModelLoadError(f"model {model['name']!r} has no modules.json: its body is not a sentence-transformers model")
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model {model['name']!r}: modules.json is unreadable: {exc}") from None
    if not isinstance(modules, list) or not modules or not all(isinstance(m, dict) for m in modules):
        raise ModelLoadError(f"model {model['name']!r}: modules.json is not a list of modules")
    for m in modules:
        kind, where = str(m.get("type", "")), str(m.get("path", ""))
        if not kind.startswith("sentence_transformers."):
            raise UnsafeModelError(f"model {model['name']!r}: modules.json names the module class {kind!r}, which is "
                                   "custom code (not sentence_transformers'); zooeval never runs repo code")
        if PurePosixPath(where).is_absolute() or ".." in PurePosixPath(where).parts:
            raise ModelLoadError(f"model {model['name']!r}: modules.json module path {where!r} leaves the repo")
    return modules


def transformer_weights(model: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Check one Transformer module folder before anything reads it, the way modules.hf checks a Transformers
    repo: config.json without custom code; safetensors, else pickle checkpoints that load with
    torch.load(weights_only=True). Returns the from_pretrained keyword arguments for its weights."""
    check_local_config(model, str(folder))
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("model_head."))
    if any(n.endswith(".safetensors") for n in names):
        return {"use_safetensors": True, "weights_only": True}
    if any(PICKLE_WEIGHTS.match(n) for n in names):
        check_pickle_weights({"name": model["name"], "path": str(folder), "files": dict.fromkeys(names)}, str(folder), {})
        return {"use_safetensors": False, "weights_only": True}
    foreign = [n for n in names if n.endswith(FOREIGN_WEIGHTS)]
    if foreign:
        raise IncompatibleLibraryError(f"model {model['name']!r}: the body has only weights for other frameworks "
                                       f"({', '.join(foreign)}); zooeval runs PyTorch weights")
    raise ModelLoadError(f"model {model['name']!r}: the body's Transformer module ({folder.name}) has no weight files")


def check_body_complete(model: dict[str, Any], network: Any, folder: Path, kwargs: dict[str, Any]) -> None:
    """Every parameter of a loaded Transformer module came from its checkpoint: the checkpoint is read again
    by the class sentence-transformers chose, with ``output_loading_info`` (modules.hf.check_complete)."""
    try:
        _, info = type(network).from_pretrained(str(folder), trust_remote_code=False, output_loading_info=True,
                                                local_files_only=True, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the body of model {model['name']!r}: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from exc
    check_complete(model["name"], info)


def load_body(model: dict[str, Any], root: Path, device: str) -> Any:
    """The sentence-transformers body of a SetFit repo, checked and loaded on ``device`` in eval mode."""
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    modules = read_modules(model, root)
    transformers_at = {str(m.get("name", i)): root / str(m.get("path", "")) for i, m in enumerate(modules)
                       if str(m["type"]).rsplit(".", 1)[-1] == "Transformer"}
    if not transformers_at:
        raise ModelLoadError(f"model {model['name']!r}: modules.json has no Transformer module")
    weights = {name: transformer_weights(model, folder) for name, folder in transformers_at.items()}
    if len({json.dumps(w, sort_keys=True) for w in weights.values()}) > 1:
        raise ModelLoadError(f"model {model['name']!r}: the body's Transformer modules mix safetensors and pickle weights")
    kwargs = next(iter(weights.values()))
    try:
        body = SentenceTransformer(str(root), device=device, trust_remote_code=False, local_files_only=True,
                                   model_kwargs=dict(kwargs))
    except Exception as exc:
        if "trust_remote_code" in str(exc):
            raise UnsafeModelError(f"model {model['name']!r} needs remote code, which zooeval never runs: "
                                   f"{_first_line(exc)}") from exc
        raise ModelLoadError(f"cannot load the body of model {model['name']!r} with sentence-transformers: "
                             f"{type(exc).__name__}: {_first_line(exc)}") from exc
    children = dict(body.named_children())
    for name, folder in transformers_at.items():
        module = children.get(name)
        network = getattr(module, "model", None) or getattr(module, "auto_model", None)
        if network is None:
            raise ModelLoadError(f"model {model['name']!r}: sentence-transformers loaded no network for module {name!r}")
        check_body_complete(model, network, folder, kwargs)
    return body.eval()


def embedding_dim(body: Any) -> int | None:
    get = getattr(body, "get_embedding_dimension", None) or getattr(body, "get_sentence_embedding_dimension")
    dim = get()
    return int(dim) if dim is not None else None


# -- the module -----------------------------------------------------------------------------------
@register_module
class SetFitTextClassification(EvaluationModule):
    """SetFit repos (sentence-transformers body + safe head) on text classification datasets."""

    kind = "setfit-text-classification"
    version = 1
    sources = ("huggingface", "local")
    task = "text-classification"
    datatype = "text"

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """SetFit repos only (modules.formats), then the base rules."""
        return model_format(model) == SETFIT and super().accepts(model, datasets)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        files = repo_files(model)
        head_file = choose_head(model, files)
        root = fetch(model, files_to_fetch(files, head_file))
        labels, normalize = read_setfit_config(model, root)
        head = parse_head(model["name"], head_file, *read_head_file(model, root / head_file))
        body = load_body(model, root, device)
        id2label = head_labels(model["name"], head, labels, embedding_dim(body))
        return LoadedModel(SetFitClassifier(body, head.to(device), normalize), None, id2label, device,
                           extra={"head_file": head_file, "head_layout": head.layout})

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        return {"texts": [str(x) for x in inputs]}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> torch.Tensor:
        """The head's logits on the body's embeddings, computed as SetFitModel.predict_proba does
        (SentenceTransformer.encode, normalised when the config says so)."""
        clf: SetFitClassifier = loaded.model
        texts = batch["texts"]
        embeddings = clf.body.encode(texts, batch_size=max(1, len(texts)), convert_to_tensor=True,
                                     normalize_embeddings=clf.normalize_embeddings, show_progress_bar=False)
        return clf.head.logits(embeddings.to(loaded.device))


def _float_setting(what: str, settings: dict[str, str], key: str, default: float) -> float:
    if key not in settings:
        return default
    try:
        return float(settings[key])
    except ValueError:
        raise ModelLoadError(f"{what}: the setting {key}={settings[key]!r} is not a number") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
