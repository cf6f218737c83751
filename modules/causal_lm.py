"""Causal language models (``AutoModelForCausalLM``) scoring multiple-choice endings by log-likelihood, exactly as
lm-evaluation-harness's ``HFLM.loglikelihood`` does (lm_eval 0.4.13, models/huggingface.py and api/model.py):

* a request is (context, " " + ending); whitespace at the end of the context moves to the continuation's start;
  ``context + continuation`` and ``context`` are tokenised whole (the tokenizer's default special tokens, none
  when the text starts with the BOS text) and the continuation is what the whole has past the context's tokens;
* the model reads ``(context + continuation)[-(max_length + 1):][:-1]``, right-padded in a batch; the score is
  the sum of the log-softmax (float32) of the continuation's tokens at the positions that predict them.

Repos load from safetensors (or pickle weights through ``torch.load(weights_only=True)``: modules.hf's safe
loading), or from a GGUF file when the repo holds one and no other weights (``gguf_file=``: transformers
dequantises it to float32; needs the ``gguf`` package). Weights run in float32; ``trust_remote_code`` is never
enabled. A model of a Hub "text-generation" repo is zero-shot: it is a candidate for every multiple-choice
dataset, whatever it was trained on, up to :attr:`CausalLMMultipleChoice.max_weight_bytes` of weight files.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from modules.base import EvaluationModule, InferenceError, LoadedModel, ModelLoadError, UnsafeModelError, register_module
from modules.formats import TRANSFORMERS, model_format
from modules.hf import check_complete, hub_access_error, load_transformers, model_location

#: lm-evaluation-harness's context length when neither the config nor the tokenizer gives one
DEFAULT_MAX_LENGTH = 2048
#: what transformers' tokenizers say when they have no length limit (lm_eval.models.utils.TOKENIZER_INFINITY)
TOKENIZER_INFINITY = 1000000000000000019884624838656


def gguf_file(model: dict[str, Any]) -> str | None:
    """The repo's GGUF file when it has one and no safetensors or pickle weights (None otherwise); a repo
    with several GGUF files (quantisations) is refused, since which one is the model is not known."""
    files = model.get("files") or {}
    if any(f.endswith((".safetensors", ".bin", ".pt", ".pth")) for f in files):
        return None
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    if len(ggufs) > 1:
        raise ModelLoadError(f"model {model['name']!r} holds {len(ggufs)} GGUF files ({', '.join(ggufs[:4])}); zooeval "
                             "evaluates a repo with one")
    return ggufs[0] if ggufs else None


def load_gguf(model: dict[str, Any], filename: str, device: str) -> tuple[Any, Any]:
    """A GGUF repo as a float32 ``AutoModelForCausalLM`` and its tokenizer (both read from the GGUF file)."""
    import transformers

    if (model.get("config") or {}).get("auto_map"):
        raise UnsafeModelError(f"model {model['name']!r} needs remote code (config auto_map); zooeval never enables "
                               "trust_remote_code")
    where, kwargs = model_location(model)
    try:
        net, info = transformers.AutoModelForCausalLM.from_pretrained(
            where, gguf_file=filename, dtype=torch.float32, trust_remote_code=False, output_loading_info=True, **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, gguf_file=filename, trust_remote_code=False, **kwargs)
    except Exception as exc:
        if (denied := hub_access_error(model, exc)) is not None:
            raise denied from exc
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load the GGUF file {filename} of model {model['name']!r}: "
                             f"{type(exc).__name__}: {msg}") from exc
    check_complete(model["name"], info)
    return net.eval().to(device), tokenizer


def max_length_of(config: Any, tokenizer: Any) -> int:
    """The model's context length as lm-evaluation-harness resolves it (``resolve_max_length``)."""
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit is not None and limit != TOKENIZER_INFINITY else DEFAULT_MAX_LENGTH


class LoglikelihoodEncoder:
    """lm-evaluation-harness's tokenisation of a (context, continuation) request for a causal model."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_text = tokenizer.decode(self.prefix_token_id) if self.prefix_token_id is not None else None

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        if add_special_tokens is None and self.prefix_text is not None and text.startswith(self.prefix_text):
            kwargs["add_special_tokens"] = False
        return list(self.tokenizer.encode(text, **kwargs))

    def pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens)."""
        if context == "":
            cont = self.encode(continuation, add_special_tokens=False)
            return ([self.prefix_token_id], cont) if self.prefix_token_id != cont[0] else (cont[:1], cont[1:])
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
        whole = self.encode(context + continuation)
        context_enc = self.encode(context)
        return context_enc, whole[len(context_enc):]


def requests_of(item: tuple[str, list[str]]) -> list[tuple[str, str]]:
    """An item's requests as lm-evaluation-harness's multiple_choice output type makes them: the context and
    each ending after the target delimiter " "."""
    context, endings = item
    return [(context, " " + ending) for ending in endings]


@register_module
class CausalLMMultipleChoice(EvaluationModule):
    """A causal LM's log-likelihood of every ending of a multiple-choice item (lm-evaluation-harness's HFLM)."""

    kind = "hf-causal-lm"
    version = 1
    task = "multiple-choice"
    datatype = "multiple-choice"
    sources = ("huggingface", "local")
    #: the Hub's tag of causal LMs, and the task kind's own name (what a local repo with a ``...ForCausalLM``
    #: architecture and no pipeline_tag is stored as: tasks.base.task_for_architectures)
    model_tasks = ("text-generation", "multiple-choice")
    #: zero-shot: evaluated on every multiple-choice dataset, so no training dataset is inferred from labels
    needs_training_data = False
    #: models with more weight bytes than this are not candidates (a 7B model in float32 is 28 GB)
    max_weight_bytes = 4 * 1024 ** 3

    def accepts(self, model: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> bool:
        """A Transformers (or GGUF) repo of a text-generation model whose architecture, when known, is a
        ``...ForCausalLM``, within the size limit. Zero-shot: the datasets it was trained on do not matter."""
        if model.get("source") not in self.sources or model.get("task") not in self.model_tasks:
            return False
        if model_format(model) != TRANSFORMERS:
            return False
        archs = (model.get("config") or {}).get("architectures") or []
        if archs and not any(str(a).endswith("ForCausalLM") for a in archs):
            return False
        sizes = [s or 0 for f, s in (model.get("files") or {}).items()
                 if f.endswith((".safetensors", ".bin", ".pt", ".pth", ".gguf"))]
        return sum(sizes) <= self.max_weight_bytes

    def load(self, model: dict[str, Any], device: str) -> LoadedModel:
        filename = gguf_file(model)
        if filename is not None:
            net, tokenizer = load_gguf(model, filename, device)
        else:
            net, tokenizer = load_transformers(model, "AutoModelForCausalLM", "AutoTokenizer", device)
            net = net.float()  # float32 whatever the checkpoint's dtype (bf16 -> f32 is exact)
        keeps = "logits_to_keep" in inspect.signature(net.forward).parameters
        extra = {"encoder": LoglikelihoodEncoder(tokenizer), "max_length": max_length_of(net.config, tokenizer),
                 "logits_to_keep": keeps, "gguf_file": filename}
        return LoadedModel(net, tokenizer, {}, device, extra)

    def prepare(self, loaded: LoadedModel, inputs: list[Any]) -> dict[str, Any]:
        """Every ending of every item (context, endings) as one row, right-padded with 0 (no attention mask, as
        lm-evaluation-harness: a causal model's positions never see the padding after them): input ids and, per
        row, the continuation's tokens at the positions that predict them (-1 elsewhere)."""
        encoder, max_length = loaded.extra["encoder"], loaded.extra["max_length"]
        rows, conts = [], []
        for item in inputs:
            for context, continuation in requests_of(item):
                context_enc, cont_enc = encoder.pair(context, continuation)
                if not context_enc or not cont_enc:
                    raise InferenceError(f"the ending {continuation!r} tokenises to no tokens after its context")
                if len(cont_enc) > max_length:
                    raise InferenceError(f"an ending of {len(cont_enc)} tokens is longer than the model's context "
                                         f"({max_length} tokens)")
                rows.append((context_enc + cont_enc)[-(max_length + 1):][:-1])
                conts.append(cont_enc)
        width = max(len(r) for r in rows)
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        targets = torch.full((len(rows), width), -1, dtype=torch.long)
        for i, (row, cont) in enumerate(zip(rows, conts)):
            input_ids[i, : len(row)] = torch.as_tensor(row)
            targets[i, len(row) - len(cont) : len(row)] = torch.as_tensor(cont)
        return {"input_ids": input_ids, "targets": targets}

    def forward(self, loaded: LoadedModel, batch: dict[str, Any]) -> torch.Tensor:
        """The sum of the continuation tokens' log-probabilities of every row, float64 (n_rows,)."""
        targets = batch["targets"]
        scored = targets >= 0
        kwargs: dict[str, Any] = {}
        first = int(scored.float().argmax(dim=1).min())  # the earliest position any row scores
        if loaded.extra["logits_to_keep"]:
            kwargs["logits_to_keep"] = targets.shape[1] - first  # only the logits scored positions need
        logits = loaded.model(input_ids=batch["input_ids"], **kwargs).logits
        offset = targets.shape[1] - logits.shape[1]
        rows, cols = torch.nonzero(scored, as_tuple=True)
        logprobs = torch.log_softmax(logits[rows, cols - offset].float(), dim=-1)  # only the scored positions
        picked = logprobs.gather(1, targets[rows, cols].unsqueeze(1)).squeeze(1)
        counts = scored.sum(dim=1).tolist()  # rows are in order: each row's values are contiguous
        return torch.stack([part.sum() for part in torch.split(picked, counts)]).double()  # float32 sums, as lm-eval


__all__ = ["CausalLMMultipleChoice", "LoglikelihoodEncoder", "gguf_file", "load_gguf", "max_length_of", "requests_of"]
