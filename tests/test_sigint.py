"""Ctrl-C and SIGTERM end every node executable cleanly: exit status 0, no traceback.

Each node runs as a real process on its own ROS domain (localhost only). The signal goes out
once the node says it runs (its log line), so it lands in spin or, for sim_bridge, which
renders in its callbacks most of the time, usually inside a callback; the jaeger method case
sends it while the checkpoint is still loading (start-up, before spin).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def start(module: str, tmp_path: Path, *ros_args: str) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    log = tmp_path / f"{module}.log"
    cmd = [sys.executable, "-m", module, *(["--ros-args", *ros_args] if ros_args else [])]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def wait_for(proc: subprocess.Popen, log: Path, text: str, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            pytest.fail(f"never saw {text!r} (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen, log: Path, sig: signal.Signals) -> str:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running 30 s after {sig.name}:\n{log.read_text()[-3000:]}")
    return log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("module,ready", [("jaeger_ros.ros.jaeger_node", "lifecycle: inactive -> active"),
                                          ("sim_bridge.node", "sim_bridge live")])
def test_running_node_exits_0_without_traceback(module, ready, sig, tmp_path):
    proc, log = start(module, tmp_path, "-p", "speech_pool:=2") if module == "sim_bridge.node" else \
        start(module, tmp_path)
    wait_for(proc, log, ready)
    output = stop(proc, log, sig)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    if module == "jaeger_ros.ros.jaeger_node":  # the managed node released what it held
        assert "lifecycle: active -> finalized" in output, output[-3000:]


def test_jaeger_node_interrupted_while_loading_its_checkpoint(tmp_path):
    proc, log = start("jaeger_ros.ros.jaeger_node", tmp_path, "-p", "method:=jaeger")
    wait_for(proc, log, "loading checkpoint")
    output = stop(proc, log, signal.SIGINT)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "-> active" not in output, "the signal came after start-up: this case tests nothing"
