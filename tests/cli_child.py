"""`zooeval` commands in child processes that start warm, for the tests that must run a command in its own process
(the Hugging Face client reads HF_ENDPOINT, HF_HOME and the offline switches once, when it is imported).

`run_zooeval` is `subprocess.run([python, "-m", "service.cli", *args], env=env, ...)` with the same separation: each
command is its own process with exactly the given environment, set before huggingface_hub, transformers, datasets
or timm is imported, and it ends like any interpreter (atexit, flushed streams, its exit code). What differs is
where the process comes from: a zygote started once per test session has imported the libraries that read no Hub
setting (torch, torchvision, scikit-learn, pymongo) and forks one child per command, which saves their import,
about 5 s a command on these machines. The zygote never imports the Hub client; a test asserts so. Of the
variables a Python interpreter reads when it starts, only PYTHONPATH is applied per command (sys.path is built as a
new interpreter would build it); the others (PYTHONHASHSEED, PYTHONWARNINGS, ...) are the zygote's.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
#: imported once by the zygote: heavy, and none of them imports huggingface_hub or reads an HF_* variable at import
WARM = ("numpy", "torch", "torchvision", "torchvision.transforms.v2", "PIL.Image", "sklearn.metrics", "pymongo",
        "bson", "click", "rich.console", "yaml", "safetensors.torch")
#: must not be imported before a command's environment is set
COLD = ("huggingface_hub", "transformers", "datasets", "timm", "evaluate", "setfit", "sentence_transformers")

ZYGOTE = """
import json, os, sys
for name in sys.argv[1].split(","):
    __import__(name)
cold = [m for m in sys.argv[2].split(",") if m in sys.modules]
if cold:
    raise SystemExit(f"the zygote imported {cold}: they would read the Hub settings before a command sets them")
own = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
base_path = [p for p in sys.path[1:] if p not in own]
import gc
gc.freeze()  # the warm objects stay out of the children's collections (fewer copy-on-write pages)
requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "w", buffering=1)
while True:
    line = requests.readline()
    if not line:
        raise SystemExit(0)
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        replies.close()
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, req["out"]), (2, req["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        sys.argv = ["zooeval", *req["args"]]
        # the path a new interpreter would have: the working folder, the command's PYTHONPATH, the installation
        extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [req["cwd"], *extra, *base_path]
        import atexit, runpy, threading
        code = 0
        try:
            runpy.run_module("service.cli", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        # what the interpreter's exit does, less its teardown of every object (with the warm libraries' objects
        # shared copy-on-write, that teardown alone took ~2 s a command): threads joined, atexit, streams flushed
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    replies.write(f"{pid}\\n")
    _, status = os.waitpid(pid, 0)
    replies.write(f"{os.waitstatus_to_exitcode(status)}\\n")
"""


class _Zygote:
    """The warm parent process; one command at a time (a lock), started on first use, ended with the session."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, ",".join(WARM), ",".join(COLD)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
            atexit.register(self.stop)
        return self.proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def _line(self, proc: subprocess.Popen, timeout: float | None) -> str:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().decode() if ready else ""
        if ready and not line:
            raise RuntimeError(f"the zooeval zygote died (exit {proc.wait()})")
        return line

    def run(self, args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float | None
            ) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory(prefix="zooeval-cli-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            proc = self.start()
            req = {"args": list(args), "env": dict(env), "cwd": str(cwd), "out": str(out), "err": str(err)}
            proc.stdin.write((json.dumps(req) + "\n").encode())
            proc.stdin.flush()
            pid = int(self._line(proc, 60))
            code = self._line(proc, timeout)
            if not code:  # timed out: end the command's whole process group, as subprocess.run's timeout would
                os.killpg(pid, signal.SIGKILL)
                self._line(proc, 60)
                raise subprocess.TimeoutExpired(["zooeval", *args], timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess(["zooeval", *args], int(code), out.read_text(), err.read_text())


_ZYGOTE = _Zygote()


def run_zooeval(args: Sequence[str], env: dict[str, str], cwd: Path | str = REPO, timeout: float | None = 600
                ) -> subprocess.CompletedProcess:
    """Run `zooeval *args` in its own (warm-started) process with exactly ``env``; stdout and stderr as text.
    ZOOEVAL_TESTS_COLD_CLI=1 starts each command cold, as `python -m service.cli` (to compare)."""
    if os.environ.get("ZOOEVAL_TESTS_COLD_CLI") == "1":
        return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)
    return _ZYGOTE.run(args, env, Path(cwd), timeout)
