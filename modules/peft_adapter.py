"""PEFT adapter modules (LoRA and the other peft methods) for classification: the adapter is evaluated on
its base model, at the base revision pinned at scrape time (scraper.adapters).

Loading: the base with transformers under the rules of modules.hf (never ``trust_remote_code``, a config
with ``auto_map`` refused, safetensors when the repo has them, a pickle checkpoint opened only with
``torch.load(weights_only=True)``), from the Hub at the pinned sha or from its local folder (whose revision
must still be the pinned one); then the adapter with peft's ``PeftModel.from_pretrained`` at the adapter's
own pinned revision. transformers is never asked to load the adapter repo itself.

Completeness: every base parameter the base checkpoint lacks (transformers' ``missing_keys``, or of another
shape than the checkpoint's) must be supplied by the adapter (a ``modules_to_save`` module, e.g. the
classification head, whose weights peft loaded), and every adapter tensor peft expects must be in the
adapter's weights; otherwise the model is refused as ``incomplete_weights`` (modules.base.IncompleteWeightsError)
naming the tensors, since they would keep a random initialisation.

Every refusal says ``PEFT adapter: `` and why: an unknown or unreachable base ("base model X at revision Y
cannot be loaded: ..."), target modules that are not in the base, a ``task_type`` the module cannot run.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any, ClassVar

from modules.base import EvaluationModule, IncompleteWeightsError, LoadedModel, ModelLoadError, UnsafeModelError, register_module
from modules.formats import PEFT, model_format
from modules.hf import (
    HFImageClassification,
    HFTextClassification,
    check_local_config,
    check_pickle_weights,
    check_safe,
    model_location,
)

PREFIX = "PEFT adapter: "
#: how peft's saved state dicts name a base model parameter (a modules_to_save copy, e.g. the head)
BASE_KEY_PREFIX = "base_model.model."
#: the start of the warning peft gives for adapter tensors its weights file lacks (peft keeps its wording stable)
MISSING_ADAPTER_KEYS = "Found missing adapter keys while loading the checkpoint"
PREPROCESSOR_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "preprocessor_config.json")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


class _PeftClassification:
    """Loading shared by the PEFT modules; mixed in before the Hugging Face module whose ``prepare`` and
    ``forward`` they reuse (the PeftModel takes the same inputs as its base)."""

    version: ClassVar[int] = 1
    auto_model: ClassVar[str]
    preprocessor_class: ClassVar[str]
    task_types: ClassVar[tuple[str | None, ...]]  # the adapter task types (peft TaskType values) this module runs

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """PEFT adapter repos only (plain Transformers repos go to modules.hf)."""
        return model_format(model) == PEFT and EvaluationModule.accepts(self, model, datasets)

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        import transformers
        from peft.utils import ModulesToSaveWrapper

        transformers.utils.logging.disable_progress_bar()
        adapter_where, adapter_kwargs = model_location(model)
        try:
            check_safe(model)
        except ModelLoadError as exc:
            raise type(exc)(f"{PREFIX}{exc}") from None
        self._check_task_type(model, adapter_where, adapter_kwargs)
        base_name, base_rev, base_where, base_kwargs = self._base(model)
        base, not_in_checkpoint = self._load_base(model, base_name, base_rev, base_where, base_kwargs)
        net = self._apply_adapter(model, base, base_name, adapter_where, adapter_kwargs)
        saved = {n.removeprefix(BASE_KEY_PREFIX) for n, m in net.named_modules() if isinstance(m, ModulesToSaveWrapper)}
        lacking = sorted(k for k in not_in_checkpoint if not any(k.startswith(f"{module}.") for module in saved))
        if lacking:
            raise IncompleteWeightsError(
                f"{PREFIX}base model {base_name!r} at revision {base_rev} lacks {len(lacking)} tensors that adapter "
                f"{model['name']!r} does not supply either (they would be initialised at random; an adapter supplies "
                f"them with modules_to_save): {', '.join(lacking[:20])}")
        pre = self._preprocessor(model, adapter_where, adapter_kwargs, base_where, base_kwargs)
        net.eval().to(device)
        labels = {int(k): str(v) for k, v in (base.config.id2label or {}).items()}
        return LoadedModel(net, pre, labels, device, extra={"base_model": base_name, "base_revision": base_rev})

    # -- the pieces of load() -----------------------------------------------------------------------
    def _check_task_type(self, model: dict[str, Any], where: str, kwargs: dict[str, Any]) -> None:
        """The adapter config (read again at the adapter's pinned revision) names a task type this module runs."""
        from peft import PeftConfig

        try:
            config = PeftConfig.from_pretrained(where, **({"revision": kwargs["revision"]} if "revision" in kwargs else {}))
        except Exception as exc:
            raise ModelLoadError(f"{PREFIX}cannot read adapter_config.json of {model['name']!r}: {_first_line(exc)}") from exc
        task_type = getattr(config.task_type, "value", config.task_type)
        if task_type not in self.task_types:
            runs = " or ".join("none" if t is None else t for t in self.task_types)
            raise ModelLoadError(f"{PREFIX}adapter {model['name']!r} has task_type {task_type!r}; the "
                                 f"{self.kind} module runs adapters of task_type {runs}")  # type: ignore[attr-defined]

    def _load_base(self, model: dict[str, Any], base_name: str, base_rev: str, where: str,
                   kwargs: dict[str, Any]) -> tuple[Any, set[str]]:
        """The base model with transformers, and the names of its parameters its checkpoint did not supply
        (missing, or of another shape). Labels declared by the adapter repo's config replace the base's."""
        import transformers

        cannot = f"{PREFIX}base model {base_name!r} at revision {base_rev} cannot be loaded"
        id2label = {int(k): v for k, v in ((model.get("config") or {}).get("id2label") or {}).items()}
        if id2label:  # the head gets the adapter's label count; its weights must then come from the adapter
            kwargs = {**kwargs, "id2label": id2label, "label2id": {v: k for k, v in id2label.items()},
                      "ignore_mismatched_sizes": True}
        try:
            base, info = getattr(transformers, self.auto_model).from_pretrained(
                where, trust_remote_code=False, output_loading_info=True, **kwargs)
        except Exception as exc:  # OSError (not found), ValueError (unknown architecture), safetensors errors, ...
            if "trust_remote_code" in str(exc):
                raise UnsafeModelError(f"{cannot}: it needs remote code, which zooeval never runs: {_first_line(exc)}") from exc
            raise ModelLoadError(f"{cannot}: {_first_line(exc)}") from exc
        mismatched = {k[0] if isinstance(k, (tuple, list)) else k for k in info.get("mismatched_keys") or ()}
        return base, set(info.get("missing_keys") or ()) | mismatched

    @staticmethod
    def _apply_adapter(model: dict[str, Any], base: Any, base_name: str, where: str, kwargs: dict[str, Any]) -> Any:
        """peft's PeftModel of the adapter (at its pinned revision) on ``base``. Every adapter tensor peft
        expects must be in the adapter's weights (peft raises for a modules_to_save module and warns for the
        others: both are refused)."""
        from peft import PeftModel
        from peft.utils.error import NoMatchingPeftModuleError

        name = model["name"]
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                net = PeftModel.from_pretrained(base, where, is_trainable=False, torch_device="cpu",
                                                **({"revision": kwargs["revision"]} if "revision" in kwargs else {}))
        except pickle.UnpicklingError as exc:
            raise UnsafeModelError(f"{PREFIX}the adapter weights of {name!r} hold objects other than tensors, so "
                                   f"loading them could run arbitrary code; refused ({_first_line(exc)})") from None
        except KeyError as exc:  # peft: a modules_to_save module whose weights are not in the adapter file
            raise IncompleteWeightsError(f"{PREFIX}adapter {name!r} lacks the tensor {exc.args[0] if exc.args else exc} "
                                         "that its modules_to_save needs") from None
        except NoMatchingPeftModuleError as exc:
            raise ModelLoadError(f"{PREFIX}the target modules of adapter {name!r} are not in base model "
                                 f"{base_name!r}: {_first_line(exc)}") from exc
        except Exception as exc:
            raise ModelLoadError(f"{PREFIX}cannot apply adapter {name!r} to base model {base_name!r}: "
                                 f"{_first_line(exc)}") from exc
        missing = [str(w.message) for w in caught if MISSING_ADAPTER_KEYS in str(w.message)]
        if missing:
            raise IncompleteWeightsError(f"{PREFIX}tensors of adapter {name!r} are missing from its weights file, so "
                                         f"they would keep their random initialisation (peft: {missing[0][:1500]})")
        return net

    def _base(self, model: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
        """(base name, pinned revision, where from_pretrained reads it, its safe keyword arguments)."""
        adapter = model.get("adapter") or {}
        base_name, base_rev = adapter.get("base_model"), adapter.get("base_revision")
        if not base_name:
            why = adapter.get("note") or "its adapter_config.json was not read at scrape time (scrape again)"
            raise ModelLoadError(f"{PREFIX}the base model of {model['name']!r} is unknown: {why}")
        cannot = f"{PREFIX}base model {base_name!r} at revision {base_rev} cannot be loaded"
        if not base_rev:
            raise ModelLoadError(f"{cannot}: {adapter.get('note') or 'its revision was not resolved at scrape time'}")
        if model.get("path"):
            base_doc = self._local_base(base_name, base_rev, adapter, cannot)
        else:
            base_doc = self._hub_base(base_name, base_rev, cannot)
        if "adapter_config.json" in (base_doc.get("files") or {}):
            raise ModelLoadError(f"{cannot}: it is itself a PEFT adapter (adapters of adapters are not run)")
        where, kwargs = model_location(base_doc)
        try:
            kwargs.update(check_safe(base_doc))
            if base_doc.get("path"):
                check_local_config(base_doc, where)
            if kwargs.get("use_safetensors") is False:
                check_pickle_weights(base_doc, where, kwargs)
        except ModelLoadError as exc:
            raise type(exc)(f"{cannot}: {exc}") from None
        return base_name, base_rev, where, kwargs

    @staticmethod
    def _local_base(base_name: str, base_rev: str, adapter: dict[str, Any], cannot: str) -> dict[str, Any]:
        """A local base: its folder still holds the pinned revision."""
        from core.fingerprint import folder_state

        if not adapter.get("base_path") or not Path(adapter["base_path"]).is_dir():
            raise ModelLoadError(f"{cannot}: its folder {adapter.get('base_path') or '(none stored)'} does not exist")
        path = Path(adapter["base_path"])
        files, now = folder_state(path)
        if now != base_rev:
            raise ModelLoadError(f"{cannot}: its folder {path} now holds revision {now} (it changed after the scrape); "
                                 "run `zooeval scrape --source local` again")
        return {"name": base_name, "path": str(path), "revision": base_rev, "files": files, "config": {}}

    @staticmethod
    def _hub_base(base_name: str, base_rev: str, cannot: str) -> dict[str, Any]:
        """A Hub base at the pinned sha: its files and config, as the safety checks need them."""
        from huggingface_hub import HfApi

        try:
            info = HfApi().model_info(base_name, revision=base_rev)
        except Exception as exc:  # RepositoryNotFoundError, RevisionNotFoundError (force-pushed), network errors
            raise ModelLoadError(f"{cannot}: {_first_line(exc)}") from exc
        config = info.config if isinstance(info.config, dict) else {}
        return {"name": base_name, "revision": base_rev, "files": {s.rfilename: s.size for s in info.siblings or []},
                "config": {"auto_map": config.get("auto_map")}}

    def _preprocessor(self, model: dict[str, Any], adapter_where: str, adapter_kwargs: dict[str, Any],
                      base_where: str, base_kwargs: dict[str, Any]) -> Any:
        """The adapter repo's tokenizer / image processor when it has one, else the base's."""
        import transformers

        pre_cls = getattr(transformers, self.preprocessor_class)
        if any(f in (model.get("files") or {}) for f in PREPROCESSOR_FILES):
            where, kwargs = adapter_where, adapter_kwargs
        else:
            where = base_where
            kwargs = {k: v for k, v in base_kwargs.items() if k in ("revision", "local_files_only")}
        try:
            return pre_cls.from_pretrained(where, trust_remote_code=False, **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"{PREFIX}cannot load the preprocessor of {model['name']!r} from {where}: "
                                 f"{_first_line(exc)}") from exc


@register_module
class PeftTextClassification(_PeftClassification, HFTextClassification):
    kind = "peft-text-classification"
    auto_model = "AutoModelForSequenceClassification"
    preprocessor_class = "AutoTokenizer"
    task_types = ("SEQ_CLS", None)


@register_module
class PeftImageClassification(_PeftClassification, HFImageClassification):
    kind = "peft-image-classification"
    auto_model = "AutoModelForImageClassification"
    preprocessor_class = "AutoImageProcessor"
    task_types = (None,)  # peft has no image task type: image classification adapters declare none



