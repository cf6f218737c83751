"""Gated and private Hub repos: the stand-in answers as the Hub does (checked through the unmodified
huggingface_hub client), the Hugging Face sync stores what a token may read and says why the rest is
missing, and, end to end with child processes, `zooeval scrape`, `models`, `model` and `run` without a
token, with a token that has no access and with one that has access.

Tokens: ``GOOD`` is in the repos' ``.hubmeta.json`` ``tokens`` list, ``OTHER`` is a valid token without access.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from huggingface_hub import HfApi, get_session, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import hf_raise_for_status

from core.store import Store
from scraper.hub_client import token_fingerprint
from scraper.huggingface import GATED_NOTE, PRIVATE_NOTE, sync_huggingface
from tests.fault_repos import DATASET
from tests.hubserver import META_FILE, HubServer
from tests.test_hub_e2e import fault_zoo, zooeval  # noqa: F401 (fault_zoo: the module-scoped fixture)
from tests.test_hub_scrape import BERT, FAST, card, write_repo

pytestmark = pytest.mark.usefixtures("hub_online")  # huggingface_hub online whatever earlier tests set

GOOD, OTHER = "hf_granted0123456789", "hf_nobody0123456789"
GATED_META = {"gated": "manual", "tokens": [GOOD]}
PRIVATE_META = {"private": True, "tokens": [GOOD]}
TEXT = ("text-classification",)


def set_meta(folder: Path, meta: dict | None) -> None:
    """Write (or with None delete) a repo folder's .hubmeta.json."""
    path = folder / META_FILE
    if meta is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(meta))


@pytest.fixture
def no_implicit_token(tmp_path, monkeypatch):
    """huggingface_hub sends HF_TOKEN or the token file's token when none is given: neither may leak in."""
    import huggingface_hub.constants

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))


@pytest.fixture
def zoo(tmp_path, monkeypatch, no_implicit_token):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    root = tmp_path / "zoo"
    front = dict(pipeline_tag="text-classification", datasets=["imdb"], license="mit")
    write_repo(root, "org/open", card(**front), BERT)
    set_meta(write_repo(root, "org/gated", card(**front), BERT), GATED_META)
    set_meta(write_repo(root, "org/private", card(**front), BERT), PRIVATE_META)
    return root


@pytest.fixture
def store(mongo_uri, db_name):
    s = Store(mongo_uri, db_name)
    yield s
    s.close()


def sync(store, hub, token=None, **kw):
    kw.setdefault("retry", FAST)
    return sync_huggingface(store, endpoint=hub.url, token=token, tasks=TEXT, progress=False, log=lambda *a: None, **kw)


def hf_models(store) -> dict[str, dict]:
    return {d["name"]: d for d in store.db.models.find({"source": "huggingface"})}


def answers(hub, prefix: str) -> list[int]:
    """The statuses the stand-in answered to requests whose path starts with ``prefix``."""
    return [r.status for r in hub.requests if r.path.startswith(prefix)]


# -- the stand-in, through the unmodified client ------------------------------------------------------
def test_stand_in_answers_gated_and_private_repos_like_the_hub(zoo, tmp_path):
    cache = tmp_path / "cache"
    with HubServer(zoo) as hub:
        anonymous, other, good = (HfApi(endpoint=hub.url, token=t) for t in (False, OTHER, GOOD))

        def download(repo: str, token) -> str:
            return hf_hub_download(repo, "config.json", endpoint=hub.url, token=token, cache_dir=cache)

        # listing: gated repos are listed with how they are gated, private ones only for a token with access
        assert {m.id: m.gated for m in anonymous.list_models(full=True)} == {"org/open": False, "org/gated": "manual"}
        assert {m.id for m in other.list_models(full=True)} == {"org/open", "org/gated"}
        assert {m.id: m.private for m in good.list_models(full=True)} == {"org/open": False, "org/gated": False,
                                                                          "org/private": True}
        assert [m.id for m in anonymous.list_models(gated=True)] == ["org/gated"]
        assert sorted(m.id for m in good.list_models(gated=False)) == ["org/open", "org/private"]

        # gated: metadata and file list for everyone, files only with access
        info = anonymous.model_info("org/gated", files_metadata=True)
        assert info.gated == "manual"
        assert {s.rfilename for s in info.siblings} == {"README.md", "config.json", "model.safetensors"}
        assert {f.path for f in anonymous.list_repo_tree("org/gated")} == {"README.md", "config.json", "model.safetensors"}
        with pytest.raises(GatedRepoError) as no_token:
            download("org/gated", False)
        with pytest.raises(GatedRepoError) as no_access:
            download("org/gated", OTHER)
        assert no_token.value.response.status_code == 401 and no_access.value.response.status_code == 403
        for err in (no_token, no_access):
            assert err.value.response.headers["X-Error-Code"] == "GatedRepo"
        assert "You must have access to it and be authenticated" in str(no_token.value)
        assert "you are not in the authorized list" in str(no_access.value)
        assert json.loads(Path(download("org/gated", GOOD)).read_text()) == BERT

        # private: exactly a missing repo without access (401 anonymous, 404 with a token), never a GatedRepoError
        for token, status in ((False, 401), (OTHER, 404)):
            api = HfApi(endpoint=hub.url, token=token)
            for call in (lambda: api.model_info("org/private"), lambda: list(api.list_repo_tree("org/private")),
                         lambda: download("org/private", token), lambda: api.model_info("org/missing")):
                with pytest.raises(RepositoryNotFoundError) as err:
                    call()
                assert not isinstance(err.value, GatedRepoError)
                assert err.value.response.status_code == status
                assert err.value.response.headers["X-Error-Code"] == "RepoNotFound"
        assert good.model_info("org/private").private is True
        assert json.loads(Path(download("org/private", GOOD)).read_text()) == BERT


def test_a_bad_hubmeta_file_is_a_clear_error(zoo):
    """A typo must not make a private repo public: the stand-in answers 500 naming the file (one request:
    list_models would retry the 500 for half a minute)."""
    set_meta(zoo / "org/gated", {"gated": "yes"})
    with HubServer(zoo) as hub:
        for path in ("/api/models", "/api/models/org/gated"):
            with pytest.raises(HfHubHTTPError) as err:
                hf_raise_for_status(get_session().get(hub.url + path))
            assert err.value.response.status_code == 500
            assert str(zoo / "org/gated" / META_FILE) in str(err.value) and '"gated" must be' in str(err.value)


# -- the sync -----------------------------------------------------------------------------------------
def test_gated_model_is_stored_with_its_access_state_and_retried_when_a_token_can_change_it(zoo, store):
    with HubServer(zoo) as hub:
        counts = sync(store, hub)
        assert counts["new"] == 2 and counts["gated"] == 1 and counts["details_fetched"] == 1
        assert counts["detail_failures"] == 0
        models = hf_models(store)
        assert set(models) == {"org/open", "org/gated"}  # the private repo is invisible without a token
        gated = models["org/gated"]
        assert gated["access"] == "gated" and gated["access_note"] == GATED_NOTE == "gated: needs an HF_TOKEN with access"
        assert gated["gated"] == "manual" and gated["access_token"] is None and gated["status"] == "active"
        assert set(gated["files"]) == {"README.md", "config.json", "model.safetensors"}  # the Hub shows those
        for field in ("details_pending", "details_error", "details_revision", "config", "datasets"):
            assert field not in gated, field
        assert answers(hub, "/org/gated/resolve/") == [401]

        assert sync(store, hub)["gated"] == 0  # no token: nothing can change, nothing is asked again
        assert answers(hub, "/org/gated/resolve/") == [401]

        counts = sync(store, hub, token=OTHER)  # a token appeared: tried again, refused with 403
        assert counts["gated"] == 1 and counts["detail_failures"] == 0 and counts["new"] == 0
        assert answers(hub, "/org/gated/resolve/") == [401, 403]
        gated = hf_models(store)["org/gated"]
        assert gated["access"] == "gated" and gated["access_token"] == token_fingerprint(f"Bearer {OTHER}") != OTHER
        assert "org/private" not in hf_models(store)

        assert sync(store, hub, token=OTHER)["gated"] == 0  # the same token, refused moments ago: not asked again
        assert sync(store, hub, token=OTHER, gated_recheck=dt.timedelta(0))["gated"] == 1  # ... until gated_recheck
        assert answers(hub, "/org/gated/resolve/") == [401, 403, 403]

        counts = sync(store, hub, token=GOOD)
        assert counts["details_fetched"] == 2 and counts["gated"] == 0 and counts["new"] == 1  # gated + the private one
    models = hf_models(store)
    for name in ("org/gated", "org/private"):
        m = models[name]
        assert m["datasets"] == ["imdb"] and m["config"]["id2label"] == BERT["id2label"], name
        assert m["details_revision"] == m["revision"] and "details_pending" not in m
        assert "access" not in m and "access_note" not in m and "unevaluated_reason" not in m
    assert models["org/gated"]["gated"] == "manual" and models["org/private"]["private"] is True
    state = store.db.sync_state.find_one({"_id": "huggingface:text-classification"})
    assert state["token"] == token_fingerprint(f"Bearer {GOOD}") and state["full"] is True  # a new token: a full listing


def test_gating_lifted_without_a_new_commit_makes_the_details_readable(zoo, store):
    with HubServer(zoo) as hub:
        sync(store, hub)
        revision = hf_models(store)["org/gated"]["revision"]
        set_meta(zoo / "org/gated", None)  # the owner turns gating off: same files, same commit
        counts = sync(store, hub, full=True)  # no token
    gated = hf_models(store)["org/gated"]
    assert counts["details_fetched"] == 1 and counts["gated"] == 0 and counts["changed"] == 0
    assert gated["revision"] == revision and gated["gated"] is False and "access" not in gated
    assert gated["config"]["id2label"] == BERT["id2label"]


def test_private_model_a_later_token_cannot_see_is_marked_and_comes_back(zoo, store):
    with HubServer(zoo) as hub:
        sync(store, hub, token=GOOD)
        assert hf_models(store)["org/private"]["status"] == "active"
        watermarked = sync(store, hub, token=GOOD)
        assert watermarked["listed"] == 1 and watermarked["removed"] == 0  # the same token: from the watermark

        counts = sync(store, hub)  # no token: another view of the Hub, so a full listing, without the private repo
        assert counts["listed"] == 2 and counts["private_hidden"] == 1 and counts["removed"] == 0
        private = hf_models(store)["org/private"]
        assert private["status"] == "removed" and private["access"] == "private" and private["removed_at"]
        assert private["access_note"] == PRIVATE_NOTE and private["datasets"] == ["imdb"]  # its details are kept
        again = sync(store, hub)
        assert again["listed"] == 1 and again["private_hidden"] == again["removed"] == 0  # from the watermark again

        counts = sync(store, hub, token=GOOD)  # the token is back: a full listing shows it again
    private = hf_models(store)["org/private"]
    assert counts["restored"] == 1 and counts["details_fetched"] == 0
    assert private["status"] == "active" and "access" not in private and "access_note" not in private


# -- end to end ---------------------------------------------------------------------------------------
def table_row(out: str, name: str) -> str:
    """The line of a `zooeval models` table that shows ``name``."""
    lines = [line for line in out.splitlines() if line.split(" ", 1)[0] == name]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.slow
def test_gated_and_private_repos_end_to_end(fault_zoo, mongo_uri, db_name, tmp_path):  # noqa: F811
    root = tmp_path / "hub"
    for name, meta in (("gated", GATED_META), ("private", PRIVATE_META)):
        shutil.copytree(fault_zoo["repos"]["good"], root / "org" / name)
        set_meta(root / "org" / name, meta)
    home = tmp_path / "home"
    shutil.copytree(fault_zoo["dataset_dir"], home / "datasets" / DATASET)
    store = Store(mongo_uri, db_name)
    with HubServer(root) as hub:
        base = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "ZOOEVAL_HOME": str(home),
                "ZOOEVAL_MONGO_URI": mongo_uri, "ZOOEVAL_DB": db_name, "HF_HUB_DISABLE_TELEMETRY": "1"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            base.pop(var, None)
        anonymous, other, good = base, {**base, "HF_TOKEN": OTHER}, {**base, "HF_TOKEN": GOOD}

        # no token: the gated model is stored with why it cannot be evaluated, the private one is not seen
        out = zooeval("scrape", "--source", "huggingface", "--no-progress", env=anonymous)
        assert "new 1" in out and "gated 1" in out and "detail_failures 0" in out, out
        row = table_row(zooeval("models", env=anonymous), "org/gated")
        assert GATED_NOTE in row and "declares no training dataset" not in row, row
        page = zooeval("model", "org/gated", env=anonymous)
        assert f"not evaluated: {GATED_NOTE}" in page and "gated: manual" in page, page
        zooeval("run", "--no-progress", env=anonymous)
        assert set(hf_models(store)) == {"org/gated"}
        assert store.count("results") == store.count("failures") == store.count("inferences") == 0

        # a token without access: the 403 is handled as no token
        out = zooeval("scrape", "--source", "huggingface", "--no-progress", env=other)
        assert "gated 1" in out and "detail_failures 0" in out, out
        assert answers(hub, "/org/gated/resolve/") == [401, 403]
        zooeval("run", "--no-progress", env=other)
        assert set(hf_models(store)) == {"org/gated"} and hf_models(store)["org/gated"]["access"] == "gated"
        assert store.count("results") == store.count("failures") == 0

        # a token with access: both are read and evaluated
        out = zooeval("scrape", "--source", "huggingface", "--no-progress", env=good)
        assert "new 1" in out and "details_fetched 2" in out and "gated 0" in out, out
        assert GATED_NOTE not in zooeval("models", env=good)
        zooeval("run", "--no-progress", "--batch-size", "16", env=good)
        served = {name: hub.folders.get(name).sha for name in ("org/gated", "org/private")}

        # the token is gone: the private model is marked, not mistaken for a deleted one, and nothing runs
        out = zooeval("scrape", "--source", "huggingface", "--no-progress", env=anonymous)
        assert "private_hidden 1" in out and "removed 0" in out, out
        listing = zooeval("models", env=anonymous)
        assert PRIVATE_NOTE in table_row(listing, "org/private") and "removed" in table_row(listing, "org/private")
        assert f"not evaluated: {PRIVATE_NOTE}" in zooeval("model", "org/private", env=anonymous)
        results_before = store.count("results")
        zooeval("run", "--no-progress", env=anonymous)
        assert store.count("results") == results_before and store.count("failures") == 0

        # access revoked after the details were fetched, and a new commit: the run fails the load, clearly
        with open(root / "org/gated/README.md", "a") as fh:
            fh.write("\nA new commit.\n")
        out = zooeval("scrape", "--source", "huggingface", "--no-progress", env=anonymous)
        assert "changed 1" in out and "gated 1" in out, out
        zooeval("run", "--no-progress", env=anonymous)
    variants = store.datasets()[DATASET]["supported_variants"]
    for name in ("org/gated", "org/private"):
        res = {r["variant"]: r for r in store.iter_results({"model_name": name, "processor": "classification"})}
        assert sorted(res) == sorted(["original", *variants]), name
        assert res["original"]["overall"]["accuracy"] == pytest.approx(fault_zoo["accuracy"], abs=1e-12)
        assert res["original"]["model_revision"] == served[name]
    fails = list(store.db.failures.find())
    assert fails and {f["model_name"] for f in fails} == {"org/gated"}
    assert all(f["error_class"] == "model_load" and "gated" in f["reason"].lower() for f in fails), fails
    store.close()
