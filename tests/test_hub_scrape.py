"""The Hugging Face source against the local Hub stand-in (tests/hubserver.py), the real huggingface_hub
client and the real mongod: first and incremental syncs, changes, removals, Hub faults, broken metadata,
and transformers loading a real tiny model from the stand-in."""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download

from core.store import Store
from scraper.hub_client import HubUnreachable, RetryPolicy
from scraper.huggingface import sync_huggingface
from tests.cli_child import run_python
from tests.hubserver import Fault, HubServer

FAST = RetryPolicy(max_retries=3, base_wait=0.05, max_wait=0.2, timeout=5)
BERT = {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
        "id2label": {"0": "negative", "1": "positive"}}
RESNET = {"architectures": ["ResNetForImageClassification"], "model_type": "resnet",
          "id2label": {str(i): str(i) for i in range(10)}}
TEXT_REPOS = ["org/text-a", "org/text-b", "org/text-c", "org/broken-yaml", "org/bad-config"]


def card(**front) -> str:
    lines = ["---"] + [f"{k}: {json.dumps(v)}" for k, v in front.items()] + ["---", "", "# A model", ""]
    return "\n".join(lines) + "Trained as in arXiv:1810.04805, see also https://doi.org/10.18653/v1/N19-1423.\n"


def write_repo(root: Path, repo_id: str, readme: str | None, config: dict | str | None, weights: bytes = b"w" * 64) -> Path:
    folder = root / repo_id
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if readme is not None:
        (folder / "README.md").write_text(readme)
    if config is not None:
        (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    (folder / "model.safetensors").write_bytes(weights)
    time.sleep(0.002)  # distinct lastModified (ms) per repo
    return folder


pytestmark = pytest.mark.usefixtures("hub_online")  # huggingface_hub online whatever earlier tests set


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    root = tmp_path / "zoo"
    write_repo(root, "org/text-a", card(pipeline_tag="text-classification", license="mit", datasets=["imdb"],
                                        base_model="bert-base-uncased", tags=["sentiment"]), BERT)
    write_repo(root, "org/text-b", card(pipeline_tag="text-classification"), BERT)
    write_repo(root, "org/text-c", card(pipeline_tag="text-classification"), BERT)
    write_repo(root, "org/image-a", card(pipeline_tag="image-classification", datasets=["digits"]), RESNET)
    write_repo(root, "org/broken-yaml", "---\nlicense: [mit\ndatasets: {imdb\n---\nbody\n", BERT)  # task from the architecture
    write_repo(root, "org/bad-config", card(pipeline_tag="text-classification"), "{not json")
    write_repo(root, "org/summarizer", card(pipeline_tag="summarization"), {"architectures": ["T5ForConditionalGeneration"]})
    return root


@pytest.fixture
def store(mongo_uri, db_name):
    s = Store(mongo_uri, db_name)
    yield s
    s.close()


def sync(store, hub, **kw):
    kw.setdefault("retry", FAST)
    kw.setdefault("tasks", ("text-classification", "image-classification"))  # the zoo has no detection repos
    return sync_huggingface(store, endpoint=hub.url, progress=False, log=lambda *a: None, page_size=2, **kw)


def hf_models(store, **query):
    return {d["name"]: d for d in store.db.models.find({"source": "huggingface", **query})}


def test_first_sync_stores_every_model_with_details(zoo, store):
    with HubServer(zoo) as hub:
        counts = sync(store, hub)
        info = HfApi(endpoint=hub.url).model_info("org/text-a", files_metadata=True)
    assert counts["listed"] == counts["new"] == 6 and counts["details_fetched"] == 6
    assert counts["changed"] == counts["removed"] == counts["detail_failures"] == counts["failed_listings"] == 0
    models = hf_models(store)
    assert set(models) == set(TEXT_REPOS) | {"org/image-a"}  # the summarizer is no supported task
    a = models["org/text-a"]
    assert a["_id"] == "huggingface/org/text-a" and a["source"] == "huggingface" and a["status"] == "active"
    assert a["task"] == "text-classification" and a["revision"] == info.sha == a["details_revision"]
    assert a["last_modified"] == info.last_modified and "details_pending" not in a
    assert a["datasets"] == ["imdb"] and a["license"] == "mit" and a["base_model"] == "bert-base-uncased"
    assert a["library"] == "transformers" and "sentiment" in a["tags"]
    assert a["files"] == {s.rfilename: s.size for s in info.siblings} and a["files"]["model.safetensors"] == 64
    assert a["config"] == {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
                           "id2label": {"0": "negative", "1": "positive"}, "auto_map": None}
    assert set(a["references"]) == {"arxiv:1810.04805", "doi:10.18653/v1/N19-1423"} and a["notes"] == []
    assert store.db.references.find_one({"_id": "arxiv:1810.04805"})["url"] == "https://arxiv.org/abs/1810.04805"
    assert models["org/image-a"]["task"] == "image-classification" and models["org/image-a"]["datasets"] == ["digits"]
    broken = models["org/broken-yaml"]
    assert broken["task"] == "text-classification" and broken["config"]["id2label"] == BERT["id2label"]
    assert any("not valid YAML" in n for n in broken["notes"]) and any("no pipeline_tag" in n for n in broken["notes"])
    bad = models["org/bad-config"]
    assert any("config.json is not valid JSON" in n for n in bad["notes"]) and bad["config"]["architectures"] == []


def test_unchanged_hub_writes_nothing_and_lists_to_the_watermark(zoo, store):
    with HubServer(zoo) as hub:
        sync(store, hub)
        before = {d["_id"]: d for d in store.db.models.find()}
        pages_before = len(hub.listing_requests())
        counts = sync(store, hub)
        pages = len(hub.listing_requests()) - pages_before
    assert counts["new"] == counts["changed"] == counts["removed"] == counts["details_fetched"] == 0
    assert counts["listed"] == counts["unchanged"] == 2  # the newest of each task, at the watermark
    assert pages == 2  # one page per task, not the 3 pages of the text listing
    assert {d["_id"]: d for d in store.db.models.find()} == before  # not one write


def test_changed_repo_gets_a_new_revision_and_fresh_details(zoo, store):
    with HubServer(zoo) as hub:
        sync(store, hub)
        old = hf_models(store)
        (zoo / "org/text-b/config.json").write_text(json.dumps({**BERT, "id2label": {"0": "neg", "1": "pos"}}))
        counts = sync(store, hub)
        new_sha = HfApi(endpoint=hub.url).model_info("org/text-b").sha
    assert counts["changed"] == 1 and counts["new"] == 0 and counts["details_fetched"] == 1
    new = hf_models(store)
    assert new["org/text-b"]["revision"] == new_sha != old["org/text-b"]["revision"]
    assert new["org/text-b"]["config"]["id2label"] == {"0": "neg", "1": "pos"}
    assert new["org/text-b"]["last_modified"] > old["org/text-b"]["last_modified"]
    assert all(new[n] == old[n] for n in new if n != "org/text-b")


def test_removed_only_after_a_complete_full_listing(zoo, store):
    with HubServer(zoo) as hub:
        sync(store, hub)
        state = store.db.sync_state.find_one({"_id": "huggingface:text-classification"})
        shutil.rmtree(zoo / "org/text-a")  # the oldest text model: on the last page
        assert sync(store, hub)["removed"] == 0  # an incremental listing cannot see deletions

        fault = hub.inject(Fault(status=500, times=None, path="/api/models", page=2))
        counts = sync(store, hub, full=True)
        assert fault.hits == FAST.max_retries + 1
        assert counts["failed_listings"] == 1 and counts["removed"] == 0
        assert hf_models(store, status="removed") == {}
        assert store.db.sync_state.find_one({"_id": "huggingface:text-classification"})["watermark"] == state["watermark"]

        hub.clear_faults()
        counts = sync(store, hub, full=True)
        assert counts["removed"] == 1 and counts["failed_listings"] == 0
        assert set(hf_models(store, status="removed")) == {"org/text-a"}
        a = hf_models(store)["org/text-a"]
        assert a["removed_at"] and a["details_revision"] == a["revision"]  # kept as it was, only the status changed

        write_repo(zoo, "org/text-a", card(pipeline_tag="text-classification", license="mit", datasets=["imdb"],
                                           base_model="bert-base-uncased", tags=["sentiment"]), BERT)
        counts = sync(store, hub)  # back, with the same content: the same revision, active again
        assert counts["restored"] == 1 and hf_models(store)["org/text-a"]["status"] == "active"


def test_limited_listing_neither_advances_the_watermark_nor_removes(zoo, store):
    with HubServer(zoo) as hub:
        counts = sync(store, hub, limit=2, full=True)
        assert counts["listed"] == 3 and counts["details_fetched"] == 3  # 2 text + the only image model
        assert store.db.sync_state.find_one({"_id": "huggingface:text-classification"}) is None
        assert store.db.sync_state.find_one({"_id": "huggingface:image-classification"})["full"] is True
        first_two = sorted(hf_models(store, task="text-classification"))
        counts = sync(store, hub)  # no watermark for text: a complete listing of it
    assert counts["new"] == 3 and counts["unchanged"] == 3 and counts["removed"] == 0
    assert len(first_two) == 2 and len(hf_models(store)) == 6


def test_rate_limit_is_waited_out(zoo, store):
    with HubServer(zoo) as hub:
        fault = hub.inject(Fault(status=429, retry_after=1, path="/api/models"))
        start = time.monotonic()
        counts = sync(store, hub)
        elapsed = time.monotonic() - start
    assert fault.hits == 1 and elapsed >= 1.0
    assert counts["new"] == 6 and counts["failed_listings"] == 0


def test_transient_errors_and_stalls_are_retried(zoo, store):
    with HubServer(zoo) as hub:
        errors = hub.inject(Fault(status=500, times=2, path="/api/models", page=2))
        bad_gateway = hub.inject(Fault(status=502, times=1, path="/api/models/org/text-a"))
        stall = hub.inject(Fault(status=None, delay=1.5, times=1, path="/org/image-a/resolve/"))
        counts = sync(store, hub, retry=RetryPolicy(max_retries=3, base_wait=0.05, max_wait=0.2, timeout=0.5))
    assert (errors.hits, bad_gateway.hits, stall.hits) == (2, 1, 1)
    assert counts["new"] == 6 and counts["details_fetched"] == 6 and counts["detail_failures"] == 0


def test_failed_details_are_kept_pending_and_fetched_next_time(zoo, store):
    with HubServer(zoo) as hub:
        hub.inject(Fault(status=503, times=None, path="/api/models/org/text-c"))
        counts = sync(store, hub)
        c = hf_models(store)["org/text-c"]
        assert counts["detail_failures"] == 1 and counts["details_fetched"] == 5
        assert c["details_pending"] and "HTTP 503" in c["details_error"] and "files" not in c
        hub.clear_faults()
        counts = sync(store, hub)
    c = hf_models(store)["org/text-c"]
    assert counts["details_fetched"] == 1 and "details_pending" not in c and "details_error" not in c and c["files"]


def test_unreachable_hub_is_one_clear_error(store):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(HubUnreachable) as err:
        sync_huggingface(store, endpoint=endpoint, progress=False, log=lambda *a: None, retry=FAST)
    message = str(err.value)
    assert endpoint in message and "\n" not in message and "cannot reach the Hugging Face Hub" in message


def test_offline_mode_is_named_not_mistaken_for_an_outage(store, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE"):
        sync_huggingface(store, endpoint="http://127.0.0.1:9", progress=False, log=lambda *a: None)
    assert store.count("models") == 0


def test_synthetic_zoo_incremental_changes_and_removals(store):
    with HubServer(synthetic=2000, max_page_size=500) as hub:
        first = sync_huggingface(store, endpoint=hub.url, progress=False, log=lambda *a: None, details=False, page_size=500)
        assert first["new"] == first["listed"] == 2000 and store.db.models.count_documents({}) == 2000
        changed = set(hub.synthetic.change(fraction=0.01))
        again = sync_huggingface(store, endpoint=hub.url, progress=False, log=lambda *a: None, details=False, page_size=500)
        assert again["changed"] == 20 and again["new"] == 0 and again["listed"] <= 22
        assert ({d["name"] for d in store.db.models.find({"details_pending": True})}
                == {f"synthetic/model-{i:07d}" for i in range(2000)})
        gone = set(hub.synthetic.remove(count=7))
        full = sync_huggingface(store, endpoint=hub.url, progress=False, log=lambda *a: None, details=False,
                                page_size=500, full=True)
    assert full["removed"] == 7 and full["listed"] == 1993 and full["changed"] == 0
    assert {d["name"] for d in store.db.models.find({"status": "removed"})} == gone
    assert changed  # (and their new revisions were stored above)


def test_unmodified_client_lists_pages_and_downloads(zoo, tmp_path):
    cache = tmp_path / "cache"
    with HubServer(zoo, max_page_size=2) as hub:
        api = HfApi(endpoint=hub.url)
        listed = list(api.list_models(pipeline_tag="text-classification", sort="last_modified", full=True, cardData=True))
        assert sorted(m.id for m in listed) == sorted(TEXT_REPOS) and len(hub.listing_requests()) == 3
        assert [m.last_modified for m in listed] == sorted((m.last_modified for m in listed), reverse=True)
        a = next(m for m in listed if m.id == "org/text-a")
        assert a.sha and a.card_data.license == "mit" and {s.rfilename for s in a.siblings} >= {"config.json", "README.md"}
        assert [m.id for m in api.list_models(search="image", expand=["sha"])] == ["org/image-a"]
        path = hf_hub_download("org/text-a", "config.json", endpoint=hub.url, cache_dir=cache)
        assert json.loads(Path(path).read_text()) == BERT
        folder = snapshot_download("org/image-a", endpoint=hub.url, cache_dir=cache)
        assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
        from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

        with pytest.raises(RepositoryNotFoundError):
            api.model_info("org/nope")
        with pytest.raises(RevisionNotFoundError):
            api.model_info("org/text-a", revision="0" * 40)
        with pytest.raises(RemoteEntryNotFoundError):
            hf_hub_download("org/text-a", "nope.json", endpoint=hub.url, cache_dir=cache)


LOAD = """
import sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
repo = sys.argv[1]
tok = AutoTokenizer.from_pretrained(repo)
model = AutoModelForSequenceClassification.from_pretrained(repo)
with torch.inference_mode():
    print(model(**tok(["the film was good"], return_tensors="pt")).logits.shape[-1], model.config.id2label[1])
"""


def build_tiny_bert(dest: Path) -> None:
    """A real (untrained) BertForSequenceClassification with hidden size 32 and a 215-word vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    dest.mkdir(parents=True)
    words = "the a film movie was good bad great awful plot is not very".split() + [f"w{i}" for i in range(200)]
    (dest / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, id2label={0: "negative", 1: "positive"},
                        label2id={"negative": 0, "positive": 1})
    BertForSequenceClassification(config).save_pretrained(dest)
    BertTokenizerFast(vocab_file=str(dest / "vocab.txt")).save_pretrained(dest)


@pytest.mark.slow
def test_transformers_loads_a_real_model_from_the_stand_in(zoo, store, tmp_path):
    """transformers has no endpoint argument: it reads HF_ENDPOINT when huggingface_hub is imported, so it
    runs in a child process with HF_ENDPOINT set (and an empty HF_HOME, so nothing comes from a cache)."""
    build_tiny_bert(zoo / "tiny" / "bert-sentiment")
    (zoo / "tiny/bert-sentiment/README.md").write_text(card(pipeline_tag="text-classification", datasets=["tinysent"]))
    with HubServer(zoo) as hub:
        counts = sync(store, hub)
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "child-hf-home"), "HF_HUB_OFFLINE": "0",
               "TRANSFORMERS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
        out = run_python(LOAD, ["tiny/bert-sentiment"], env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["2", "positive"]
    tiny = hf_models(store)["tiny/bert-sentiment"]
    assert counts["new"] == 7 and tiny["config"]["architectures"] == ["BertForSequenceClassification"]
    assert tiny["files"]["model.safetensors"] > 10_000 and tiny["datasets"] == ["tinysent"] and tiny["notes"] == []
