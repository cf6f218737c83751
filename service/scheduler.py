"""The nightly service: APScheduler 3 with its jobs in MongoDB, so the schedule survives a restart.

``zooeval schedule`` registers one job, ``zooeval-cycle``, under a cron expression (default 02:00 every
night, in the scheduler's local time zone) or a fixed interval. Each firing scrapes the configured
sources and runs one cycle under the cycle lock (service.lock), so two cycles never overlap, not even
when two schedulers run by mistake: the second one logs that the lock is held and skips that firing.
``max_instances=1`` and ``coalesce=True`` keep a slow cycle from piling up missed firings.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from core.store import Store
from service.cycle import CycleOptions, run_cycle
from service.lock import LockHeld

JOB_ID = "zooeval-cycle"
JOBS_COLLECTION = "scheduler_jobs"
log = logging.getLogger("zooeval.scheduler")


def scheduled_cycle(uri: str, db_name: str, home: str, options: dict[str, Any], sources: list[dict[str, Any]]) -> str:
    """The job APScheduler runs (by reference, so its arguments are plain data stored in MongoDB)."""
    store = Store(uri, db_name)
    try:
        for src in sources:
            scrape_source(store, Path(home), src)
        try:
            summary = run_cycle(store, Path(home), CycleOptions(**options), echo=log.info)
        except LockHeld as exc:
            log.warning("skipping this firing: %s", exc)
            return "skipped"
        return "stopped" if summary.stopped else "done"
    finally:
        store.close()


def scrape_source(store: Store, home: Path, src: dict[str, Any]) -> None:
    """Bring the store in step with one zoo before the cycle; a scrape failure is logged, the cycle still runs."""
    from scraper.datasets import register_catalogue, register_datasets

    register_catalogue(store)
    register_datasets(store, home / "datasets", log=log.info)
    kind = src.get("source")
    try:
        if kind == "local":
            from scraper.local import scrape_local

            scrape_local(store, src.get("path") or home / "zoo", log=log.info)
        elif kind == "huggingface":
            from scraper.huggingface import sync_huggingface

            sync_huggingface(store, tasks=tuple(src.get("tasks") or ()),
                             progress=False, log=log.info)
        elif kind == "fiftyone":
            from scraper.fiftyone import scrape_fiftyone

            scrape_fiftyone(store, log=log.info)
        else:
            log.error("unknown source %r in the schedule; skipped", kind)
            return
        from scraper.training_data import infer_missing_training_datasets

        infer_missing_training_datasets(store, source=kind, log=log.info)
    except Exception as exc:  # the stored models are still evaluated
        log.error("scrape of %s failed: %s: %s", kind, type(exc).__name__, exc)


def make_scheduler(store: Store):
    from apscheduler.schedulers.background import BackgroundScheduler

    return BackgroundScheduler(jobstores={"default": store.scheduler_jobstore(JOBS_COLLECTION)},
                               job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})


def make_trigger(cron: str | None, interval: float | None):
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if interval:
        return IntervalTrigger(seconds=interval)
    try:
        return CronTrigger.from_crontab(cron or "0 2 * * *")
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {cron!r}: {exc} (expected 5 fields: minute hour day month weekday)") from None


def ensure_job(scheduler, store: Store, home: Path, options: CycleOptions, sources: list[dict[str, Any]],
               cron: str | None = None, interval: float | None = None):
    """Keep the stored job when it is the same schedule (so a firing missed while the service was down
    still runs, within the misfire grace time); replace it when the schedule or options changed.
    The scheduler must be started (paused is fine). Returns (job, kept)."""
    trigger = make_trigger(cron, interval)
    kwargs = {"uri": store.uri, "db_name": store.db_name, "home": str(home), "options": asdict(options), "sources": sources}
    existing = scheduler.get_job(JOB_ID)
    if existing is not None and str(existing.trigger) == str(trigger) and existing.kwargs == kwargs:
        return existing, True
    job = scheduler.add_job(scheduled_cycle, trigger, id=JOB_ID, name="zooeval nightly cycle", replace_existing=True,
                            kwargs=kwargs)
    return job, False


def stored_job(store: Store) -> dict[str, Any] | None:
    """The persisted job's next run time, read straight from MongoDB (for `zooeval status`)."""
    doc = store.scheduler_job(JOBS_COLLECTION, JOB_ID)
    if doc is None:
        return None
    when = doc.get("next_run_time")
    return {"id": JOB_ID, "next_run_time": dt.datetime.fromtimestamp(when, dt.timezone.utc) if when else None}


def serve(store: Store, home: Path, options: CycleOptions, sources: list[dict[str, Any]], cron: str | None,
          interval: float | None, max_cycles: int | None = None, echo: Callable[[str], None] = print) -> int:
    """Run the scheduler in the foreground until interrupted (or until ``max_cycles`` firings finished).
    Returns the number of firings."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED

    scheduler = make_scheduler(store)
    done = threading.Event()
    fired = {"n": 0}

    def on_event(event) -> None:
        if event.job_id != JOB_ID:
            return
        fired["n"] += 1
        if event.exception:
            echo(f"cycle {fired['n']} failed: {type(event.exception).__name__}: {event.exception}")
        else:
            echo(f"cycle {fired['n']} finished: {event.retval}")
        if max_cycles and fired["n"] >= max_cycles:
            done.set()

    scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start(paused=True)
    try:
        job, kept = ensure_job(scheduler, store, home, options, sources, cron, interval)
        scheduler.resume()
        job = scheduler.get_job(JOB_ID) or job
        what = f"every {interval:g} s" if interval else f"cron '{cron or '0 2 * * *'}'"
        echo(f"scheduler started: job {job.id} {what} ({'kept the stored job' if kept else 'job stored'}), "
             f"next run {job.next_run_time:%Y-%m-%d %H:%M:%S %Z}; jobs are kept in {store.db_name}.{JOBS_COLLECTION}; "
             "Ctrl-C to stop")
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        from service.lock import CycleLock

        if CycleLock(store).holder() is not None:
            store.request_stop()
            echo("stopping: the running cycle stops after its current batch")
        echo("scheduler stopping (the stored job stays; the next `zooeval schedule` picks it up)")
    finally:
        scheduler.shutdown(wait=True)
    return fired["n"]
