"""The Hub sync lists and stores with Python's cyclic garbage collector paused (``sync_huggingface``, with
``core.collector.collector_paused``: the listing makes no reference cycles) and leaves the collector as it found it,
also when the sync fails. Real mongod, the local Hub stand-in's synthetic zoo."""
from __future__ import annotations

import gc
import socket

import pytest

from core.store import Store
from scraper.hub_client import HubUnreachable, RetryPolicy
from scraper.huggingface import sync_huggingface
from tests.hubserver import HubServer

FAST = RetryPolicy(max_retries=1, base_wait=0.05, max_wait=0.1, timeout=5)
QUIET = dict(progress=False, log=lambda *a: None, details=False, page_size=500, retry=FAST)

pytestmark = pytest.mark.usefixtures("hub_online")  # huggingface_hub online whatever earlier tests set


class CollectorNotingStore(Store):
    """The real store; notes, at each write of listed models, whether the cyclic collector was on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.collector_on: list[bool] = []

    def insert_new_models(self, docs):
        self.collector_on.append(gc.isenabled())
        return super().insert_new_models(docs)

    def update_models(self, updates, before=None):
        self.collector_on.append(gc.isenabled())
        return super().update_models(updates, before)


@pytest.fixture
def store(mongo_uri, db_name):
    s = CollectorNotingStore(mongo_uri, db_name)
    yield s
    s.close()


def test_listing_and_storing_run_with_the_collector_paused_and_it_runs_again_after(store):
    assert gc.isenabled()
    with HubServer(synthetic=3000, max_page_size=500) as hub:
        first = sync_huggingface(store, endpoint=hub.url, write_batch=1000, **QUIET)
        assert first["new"] == 3000 and store.count("models") == 3000
        assert gc.isenabled()
        changed = hub.synthetic.change(count=40)
        again = sync_huggingface(store, endpoint=hub.url, write_batch=1000, **QUIET)
        assert again["changed"] == 40 and again["new"] == 0
        new_revisions = {name: hub.synthetic.sha(hub.synthetic.index(name)) for name in changed}
    assert gc.isenabled()
    assert store.collector_on and not any(store.collector_on)  # every batch inserted, the changes updated
    stored = {d["name"]: d["revision"] for d in store.db.models.find({"name": {"$in": changed}})}
    assert stored == new_revisions


def test_a_failed_sync_switches_the_collector_back_on_and_a_paused_caller_keeps_it_off(store):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(HubUnreachable):
        sync_huggingface(store, endpoint=endpoint, **QUIET)
    assert gc.isenabled()
    gc.disable()
    try:
        with HubServer(synthetic=600, max_page_size=500) as hub:
            assert sync_huggingface(store, endpoint=hub.url, **QUIET)["new"] == 600
        assert not gc.isenabled()
    finally:
        gc.enable()
