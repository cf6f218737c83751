"""Hub sync at scale: N synthetic models listed from the local Hub stand-in into a temporary mongod.

1. A first (full) sync of N models (half text-, half image-classification) with bulk writes, no details.
2. 1% of the models get a new revision; an incremental sync (listing stops at the watermark).

Reports models/s overall, models/s of the store side alone (time inside MongoDB calls, measured by the
sync), peak RSS (this process: the sync and the stand-in server thread), and the incremental sync's time
as a fraction of the full one. Targets: store side >= 20,000 models/s, incremental < 5% of full.

Usage: python benchmarks/bench_hub_sync.py [--models 1000000] [--page-size 1000] [--quick]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import report, target, temp_mongo  # noqa: E402
from core.store import Store  # noqa: E402
from scraper.huggingface import sync_huggingface  # noqa: E402
from tests.hubserver import HubServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1_000_000)
    ap.add_argument("--page-size", type=int, default=1000, help="listing page size (the Hub's maximum is 1,000)")
    ap.add_argument("--changed", type=float, default=0.01, help="fraction of the models changed before the incremental sync")
    ap.add_argument("--quick", action="store_true", help="50,000 models (a smoke run; the targets are for 1,000,000)")
    args = ap.parse_args()
    if args.quick:
        args.models = 50_000
    quiet = dict(progress=False, log=lambda *a: None, details=False, page_size=args.page_size)
    with temp_mongo() as uri, HubServer(synthetic=args.models, max_page_size=args.page_size) as hub:
        store = Store(uri, "bench_hub_sync")
        full = sync_huggingface(store, endpoint=hub.url, **quiet)
        pages_full = len(hub.listing_requests())
        assert full["new"] == full["listed"] == args.models, full
        changed = len(hub.synthetic.change(fraction=args.changed))
        incremental = sync_huggingface(store, endpoint=hub.url, **quiet)
        pages_incremental = len(hub.listing_requests()) - pages_full
        assert incremental["changed"] == changed and incremental["new"] == 0, incremental
        stored = store.db.models.count_documents({})
        store.close()
    data = {
        "models": args.models,
        "page_size": args.page_size,
        "full_sync_s": full["seconds"],
        "full_listing_pages": pages_full,
        "models_per_s_overall": round(args.models / full["seconds"]),
        "store_side_s": full["store_seconds"],
        "models_per_s_store_side": round(args.models / full["store_seconds"]),
        "http_and_parsing_s": round(full["seconds"] - full["store_seconds"], 3),
        "changed": changed,
        "incremental_sync_s": incremental["seconds"],
        "incremental_listed": incremental["listed"],
        "incremental_pages": pages_incremental,
        "incremental_over_full": round(incremental["seconds"] / full["seconds"], 4),
        "stored_models": stored,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "targets": [
            target("store-side models per second, full sync", args.models / full["store_seconds"], 20_000,
                   applies=not args.quick),
            target("incremental sync time / full sync time (issue 15: under 2%)", incremental["seconds"] / full["seconds"],
                   0.02, applies=not args.quick, higher_is_better=False),
        ],
    }
    report("hub_sync_quick" if args.quick else "hub_sync", data)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
