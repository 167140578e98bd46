"""The live demo as a user runs it (real node processes, private random domain, localhost).

The nodes' log lines (lifecycle transitions included) reach the demo's terminal; Ctrl-C,
SIGTERM and SIGHUP end a run in order (exit 0, summary written, no traceback, nodes gone);
the nodes die with the demo even when it is killed outright. Its scorer is also checked on
hand-made messages.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAIN = "tf: map -> odom -> base_link -> camera_link -> camera_color_optical_frame"


class Demo:
    """The demo as a child process whose merged stdout/stderr is collected line by line."""

    def __init__(self, out: Path, duration: float) -> None:
        env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        self.proc = subprocess.Popen([sys.executable, "-m", "jaeger_ros.ros.live_demo", "--duration", str(duration),
                                      "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text)
            if found:
                return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError(f"no {pattern!r} in the demo's output:\n{self.text[-3000:]}")

    def node_pids(self) -> list[int]:
        found = self.wait_for(r"sim_bridge \(pid (\d+)\) and jaeger_node \(pid (\d+)\)", 60)
        return [int(found.group(1)), int(found.group(2))]

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(map(running, pids)):
        time.sleep(0.1)
    return [pid for pid in pids if running(pid)]


@pytest.fixture
def demo_factory(tmp_path):
    demos: list[Demo] = []

    def make(duration: float) -> Demo:
        demos.append(Demo(tmp_path, duration))
        return demos[-1]
    yield make
    for d in demos:  # a failed assertion must not leave processes behind
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_ctrl_c_mid_run_writes_the_summary_and_stops_the_nodes(demo_factory, tmp_path):
    demo = demo_factory(120)
    pids = demo.node_pids()
    demo.wait_for(re.escape(CHAIN), 150)  # printed once the TF of an answered frame has arrived
    demo.wait_for(r"t=\s*\d+\.\ds .* match \d+/\d+", 30)  # answering and scored
    demo.proc.send_signal(signal.SIGINT)
    assert demo.finish() == 0, demo.text[-3000:]
    assert "Traceback" not in demo.text, demo.text[-3000:]
    assert not wait_gone(pids)
    # the nodes log to the demo's terminal, lifecycle transitions included
    assert re.search(r"\[jaeger_node\]: lifecycle: \S+ -> active", demo.text), demo.text[-3000:]
    assert "[sim_bridge]" in demo.text
    assert demo.text.count(CHAIN) == 1  # the TF chain, printed once
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stopped_by"] == "SIGINT" and summary["messages"] > 0
    assert 0 < summary["duration_s"] < 120
    assert summary["tf_chain"] == CHAIN.removeprefix("tf: ").split(" -> ")
    assert (tmp_path / "last_frame.png").stat().st_size > 0 and (tmp_path / "topdown.png").stat().st_size > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_during_start_up_ends_cleanly(demo_factory, tmp_path, sig):
    demo = demo_factory(120)
    pids = demo.node_pids()
    demo.proc.send_signal(sig)
    assert demo.finish() == 0, demo.text[-3000:]
    assert "Traceback" not in demo.text, demo.text[-3000:]
    assert f"live demo stopped by {sig.name}" in demo.text
    assert not wait_gone(pids)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stopped_by"] == sig.name and summary["messages"] == 0


def test_the_nodes_die_with_the_demo_even_when_it_is_killed(demo_factory):
    demo = demo_factory(120)
    pids = demo.node_pids()
    assert all(map(running, pids))
    assert os.getpgid(pids[0]) == os.getpgid(pids[1]) == pids[0] != os.getpgid(demo.proc.pid)  # their own group
    demo.proc.kill()  # SIGKILL: no handler runs in the demo
    demo.finish()
    assert not wait_gone(pids), "node processes outlived the demo"


def test_live_demo_options_set_who_talks_and_the_candidates_else_the_params_file_does():
    """`make demo` runs --talkers mixed --candidates detectors: sim_bridge gets talker_kind,
    jaeger_node candidates; without the options neither is overridden."""
    from jaeger_ros.ros.live_demo import node_commands, parse_args

    demo = node_commands(parse_args(["--world", "mesh", "--talkers", "mixed", "--candidates", "detectors"]))
    assert "talker_kind:=mixed" in demo["sim_bridge"] and "world:=mesh" in demo["sim_bridge"]
    assert "candidates:=detectors" in demo["jaeger_node"]
    plain = node_commands(parse_args([]))
    assert not any(a.startswith(("talker_kind:=", "candidates:=")) for cmd in plain.values() for a in cmd)
    assert set(plain) == {"sim_bridge", "jaeger_node"}
    assert set(node_commands(parse_args(["--tracker"]))) == {"sim_bridge", "jaeger_node", "jaeger_tracker"}


def test_a_talker_out_of_view_is_box_correct_only_when_no_box_is_claimed():
    """live_demo.Scorer on hand-made messages (no ROS transport): the male talker talks out of view
    (no box, loudspeaker -1) while a silent loudspeaker is in view; claiming that box is wrong,
    claiming none is right."""
    from jaeger_ros.msg import BoundingBox3D, SimGroundTruth, SimSource, SpeakerMatch
    from jaeger_ros.ros.live_demo import Scorer

    seen = BoundingBox3D(id=0, category="loudspeaker")
    seen.center.position.x, seen.center.position.z = 0.5, 2.0
    scorer = Scorer(window_s=1.0)
    for sec, index in [(5, 0), (6, -1)]:
        truth = SimGroundTruth(boxes=[seen], sources=[
            SimSource(gender="male", loudspeaker=-1, category="person", active=True, active_for_s=2.0, in_view=False),
            SimSource(gender="female", loudspeaker=0, category="loudspeaker", active=False, in_view=True)])
        truth.header.stamp.sec = sec
        match = SpeakerMatch(target="male", index=index, candidates=[seen])
        match.header.stamp.sec = sec
        if index >= 0:
            match.matched_box = seen
        scorer.on_truth(truth)
        scorer.on_match(match)
        assert (scorer.talker_frames, scorer.box_correct) == ((1, 0) if index >= 0 else (2, 1))
