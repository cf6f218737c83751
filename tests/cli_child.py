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

`start_zooeval` starts a command the same way and returns at once (``poll``, ``send_signal``, ``wait``), for the
tests that stop or kill a cycle midway; used as a context manager, a command not waited for is killed at the end.
"""
from __future__ import annotations

import atexit
import contextlib
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
        code_text = req.get("code")  # a `python -c` script instead of a zooeval command
        sys.argv = ["zooeval", *req["args"]] if code_text is None else ["-c", *req["args"]]
        # the path a new interpreter would have: the working folder, the command's PYTHONPATH, the installation
        extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [req["cwd"], *extra, *base_path]
        import atexit, runpy, threading
        code = 0
        try:
            if code_text is None:
                runpy.run_module("service.cli", run_name="__main__", alter_sys=True)
            else:
                exec(compile(code_text, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
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
        return self.begin(args, env, cwd).wait(timeout)

    def begin(self, args: Sequence[str], env: dict[str, str], cwd: Path, code: str | None = None) -> StartedCommand:
        """Start a command (or, given ``code``, `python -c code *args`) and return at once; the zygote stays reserved
        for it (the lock) until it is waited for."""
        self.lock.acquire()
        tmp = None
        try:
            tmp = tempfile.TemporaryDirectory(prefix="zooeval-cli-")
            out, err = Path(tmp.name) / "stdout", Path(tmp.name) / "stderr"
            proc = self.start()
            req = {"args": list(args), "env": dict(env), "cwd": str(cwd), "out": str(out), "err": str(err),
                   "code": code}
            proc.stdin.write((json.dumps(req) + "\n").encode())
            proc.stdin.flush()
            pid = int(self._line(proc, 60))
        except BaseException:
            if tmp is not None:
                tmp.cleanup()
            self.lock.release()
            raise
        return StartedCommand(self, proc, pid, list(args), tmp, out, err)


class StartedCommand:
    """A `zooeval` command running in a warm child (``start_zooeval``): ``pid`` (the leader of its own process
    group), ``poll()`` and ``wait(timeout)`` as with subprocess.Popen; a child killed by a signal ends with
    -signal. Its streams are read when it has ended (``wait`` returns a subprocess.CompletedProcess)."""

    def __init__(self, zygote: _Zygote, proc: subprocess.Popen, pid: int, args: list[str],
                 tmp: tempfile.TemporaryDirectory, out: Path, err: Path) -> None:
        self._zygote, self._proc, self.pid, self.args = zygote, proc, pid, args
        self._tmp, self._out, self._err = tmp, out, err
        self.returncode: int | None = None

    def __enter__(self) -> StartedCommand:
        return self

    def __exit__(self, *exc: object) -> None:
        """A command the test did not wait for (it failed midway) is killed and waited for, so the zygote is free for
        the next test instead of every later command waiting for it."""
        if self._tmp is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.wait(60)

    def poll(self) -> int | None:
        """The exit code once the command has ended, else None."""
        if self.returncode is None:
            line = self._zygote._line(self._proc, 0)
            if line:
                self.returncode = int(line)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the command's process (not its children)."""
        os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Wait for the end (at most ``timeout`` s: then its process group is killed and TimeoutExpired raised);
        frees the zygote for the next command."""
        if self._tmp is None:
            raise RuntimeError(f"zooeval {' '.join(self.args)} was already waited for")
        try:
            if self.returncode is None:
                code = self._zygote._line(self._proc, timeout)
                if not code:  # timed out: end the command's whole process group, as subprocess.run's timeout would
                    os.killpg(self.pid, signal.SIGKILL)
                    self._zygote._line(self._proc, 60)
                    raise subprocess.TimeoutExpired(["zooeval", *self.args], timeout, self._out.read_text(),
                                                    self._err.read_text())
                self.returncode = int(code)
            return subprocess.CompletedProcess(["zooeval", *self.args], self.returncode, self._out.read_text(),
                                               self._err.read_text())
        finally:
            self._tmp.cleanup()
            self._tmp = None
            self._zygote.lock.release()


_ZYGOTE = _Zygote()


def run_zooeval(args: Sequence[str], env: dict[str, str], cwd: Path | str = REPO, timeout: float | None = 600
                ) -> subprocess.CompletedProcess:
    """Run `zooeval *args` in its own (warm-started) process with exactly ``env``; stdout and stderr as text.
    ZOOEVAL_TESTS_COLD_CLI=1 starts each command cold, as `python -m service.cli` (to compare)."""
    if os.environ.get("ZOOEVAL_TESTS_COLD_CLI") == "1":
        return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)
    return _ZYGOTE.run(args, env, Path(cwd), timeout)


def run_python(code: str, args: Sequence[str], env: dict[str, str], cwd: Path | str = REPO,
               timeout: float | None = 600) -> subprocess.CompletedProcess:
    """`python -c code *args` in its own warm-started process with exactly ``env`` (a test's child that must import
    the Hub client itself, after its environment is set); stdout and stderr as text. ZOOEVAL_TESTS_COLD_CLI=1 starts
    it cold."""
    if os.environ.get("ZOOEVAL_TESTS_COLD_CLI") == "1":
        return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    return _ZYGOTE.begin(args, env, Path(cwd), code=code).wait(timeout)


def start_zooeval(args: Sequence[str], env: dict[str, str], cwd: Path | str = REPO) -> StartedCommand:
    """Start `zooeval *args` in its own warm-started process with exactly ``env`` and return at once, for a test that
    stops or kills a command midway; ``wait()`` for it before the next command (the zygote runs one at a time)."""
    if os.environ.get("ZOOEVAL_TESTS_COLD_CLI") == "1":
        return _ColdCommand(args, env, Path(cwd))
    return _ZYGOTE.begin(args, env, Path(cwd))


class _ColdCommand:
    """start_zooeval's command as a cold `python -m service.cli` (ZOOEVAL_TESTS_COLD_CLI=1), same interface."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.args = list(args)
        self._popen = subprocess.Popen([sys.executable, "-m", "service.cli", *self.args], env=env, cwd=cwd,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self._popen.pid

    def __enter__(self) -> _ColdCommand:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.communicate()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def poll(self) -> int | None:
        return self._popen.poll()

    def send_signal(self, sig: int) -> None:
        self._popen.send_signal(sig)

    def wait(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        try:
            out, err = self._popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            out, err = self._popen.communicate()
            raise subprocess.TimeoutExpired(["zooeval", *self.args], timeout, out, err) from None
        return subprocess.CompletedProcess(["zooeval", *self.args], self._popen.returncode, out, err)
