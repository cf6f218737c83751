"""Where zooeval keeps its state, the device chosen at run time, and the library versions and hardware
recorded with every result."""
from __future__ import annotations

import functools
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def zooeval_home() -> Path:
    """``$ZOOEVAL_HOME`` or ``~/.zooeval``; created if missing."""
    env = os.environ.get("ZOOEVAL_HOME")
    home = Path(os.path.abspath(Path(env).expanduser())) if env else Path.home() / ".zooeval"
    home.mkdir(parents=True, exist_ok=True)
    return home


LIBRARIES = ("zooeval", "torch", "torchvision", "transformers", "numpy", "pymongo", "huggingface-hub", "safetensors")


def choose_device(requested: str | None = None) -> str:
    """``requested`` or env ZOOEVAL_DEVICE, else cuda when available, else mps, else cpu."""
    requested = requested or os.environ.get("ZOOEVAL_DEVICE")
    import torch

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} was requested but CUDA is not available here")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def _static_env() -> dict[str, Any]:
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": versions,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
    }


def _memory_bytes() -> int | None:
    """The machine's physical memory."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # psutil missing or the platform unsupported: recorded as unknown
        return None


def environment(device: str) -> dict[str, Any]:
    """Library versions and hardware for a result record."""
    env = dict(_static_env())
    env["device"] = device
    env["gpu"] = None
    if device.startswith("cuda"):
        import torch

        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["gpu_memory_bytes"] = int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return env
