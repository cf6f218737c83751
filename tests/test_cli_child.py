"""The warm-started `zooeval` child processes of the tests (tests/cli_child.py) behave as `python -m service.cli`:
the exit code, both streams, exactly the given environment, and no Hub client imported before that environment."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli_child import REPO, run_python, run_zooeval

PROBE = """
import huggingface_hub.constants as c, os, sys
print(c.ENDPOINT, c.HF_HUB_OFFLINE, os.environ.get("ZOOEVAL_PROBE"), "HOME_ONLY_IN_PARENT" in os.environ)
print(sys.path[1] if len(sys.path) > 1 else "")
"""


def test_exit_codes_and_streams_as_a_cold_process():
    warm, cold = run_zooeval(["--help"], env=dict(os.environ)), subprocess.run(
        [sys.executable, "-m", "service.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert warm.returncode == cold.returncode == 0 and warm.stdout == cold.stdout and "Usage" in warm.stdout
    bad = run_zooeval(["no-such-command"], env=dict(os.environ))
    assert bad.returncode == 2 and "No such command 'no-such-command'" in bad.stderr and bad.stdout == ""


def test_the_commands_environment_is_set_before_the_hub_client_is_imported(tmp_path, monkeypatch):
    """A command's environment reaches huggingface_hub's import-time constants, and nothing else leaks in."""
    probe = tmp_path / "probe"
    (probe / "service").mkdir(parents=True)
    (probe / "service" / "__init__.py").write_text("")
    (probe / "service" / "cli.py").write_text(PROBE)  # stands in for service.cli: the child runs it from cwd
    monkeypatch.setenv("HOME_ONLY_IN_PARENT", "1")
    env = {"PATH": os.environ["PATH"], "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1",
           "ZOOEVAL_PROBE": "seen"}
    for endpoint in ("http://127.0.0.1:9", "http://127.0.0.1:10"):  # twice: one child's import is not the next one's
        out = run_zooeval([], env={**env, "HF_ENDPOINT": endpoint, "PYTHONPATH": str(tmp_path / ("site" + endpoint[-1]))},
                          cwd=probe)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [endpoint, "True", "seen", "False", str(tmp_path / ("site" + endpoint[-1]))]


def test_a_command_over_its_time_is_ended(tmp_path):
    probe = tmp_path / "slow"
    (probe / "service").mkdir(parents=True)
    (probe / "service" / "__init__.py").write_text("")
    (probe / "service" / "cli.py").write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired):
        run_zooeval([], env=dict(os.environ), cwd=probe, timeout=1)
    assert run_zooeval(["--help"], env=dict(os.environ)).returncode == 0  # the next command runs as usual


def test_a_python_script_runs_as_python_c_would(tmp_path):
    """run_python: `python -c code *args` in a warm child, with exactly its environment, the Hub client imported only
    by the script; its exit code and streams as a cold interpreter gives them."""
    script = """
import sys
cold = "huggingface_hub" in sys.modules
import huggingface_hub.constants as c, os
print(sys.argv[1:], c.ENDPOINT, os.environ.get("ZOOEVAL_PROBE"), cold, __name__)
if sys.argv[1] == "fail":
    raise ValueError("the script's own error")
sys.exit(int(sys.argv[2]))
"""
    env = {"PATH": os.environ["PATH"], "HF_ENDPOINT": "http://127.0.0.1:9", "ZOOEVAL_PROBE": "seen"}
    for args in (["ok", "0"], ["ok", "3"], ["fail", "0"]):
        warm = run_python(script, args, env=env, cwd=tmp_path)
        cold = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True)
        assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), (warm, cold)
        assert warm.stdout.split()[-4:] == ["http://127.0.0.1:9", "seen", "False", "__main__"], warm.stdout
        assert warm.returncode == (1 if args[0] == "fail" else int(args[1]))
    assert "ValueError: the script's own error" in warm.stderr and "ValueError: the script's own error" in cold.stderr
