"""Background work runs below the frame path, wherever its threads come from: threads a library
starts while its models are built (mediapipe), the voice-embedding worker; and BLAS and OpenMP
keep one thread per node process and its children unless the user chose. Niceness is read from
the kernel, thread counts from threadpoolctl."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from jaeger_ros.core.threads import BACKGROUND_NICE, THREAD_VARIABLES, built_lowered

REPO = Path(__file__).resolve().parents[1]


def _niceness(tid: int | None = None) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid if tid is not None else threading.get_native_id())


def _expected() -> int:
    return min(_niceness() + BACKGROUND_NICE, 19)


def test_a_lowered_build_and_the_threads_it_starts_run_lowered_and_the_caller_does_not():
    seen = {}

    def factory() -> str:
        seen["builder"] = _niceness()
        started = threading.Thread(target=lambda: seen.setdefault("started", _niceness()))
        started.start()
        started.join()
        return "built"
    mine = _niceness()
    assert built_lowered(factory) == "built"
    assert seen == {"builder": _expected(), "started": _expected()}
    assert _niceness() == mine


def test_a_lowered_build_raises_the_factorys_error_in_the_caller():
    def broken() -> None:
        raise FileNotFoundError("no model file")
    with pytest.raises(FileNotFoundError, match="no model file"):
        built_lowered(broken)


def _mediapipe_threads() -> dict[int, int]:
    """This process's mediapipe threads: id -> niceness."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        if stat[stat.index("(") + 1:stat.rindex(")")].startswith("mediapipe"):
            found[int(tid)] = _niceness(int(tid))
    return found


def test_the_person_models_threads_run_below_the_frame_path():
    """mediapipe starts its graph threads when its models are built; CandidateDetector builds them
    lowered, so they run below the caller (the node's frame path) whoever calls them. Only the
    threads this build started count (other tests may have built models in this process)."""
    pytest.importorskip("mediapipe")
    from jaeger_ros.detectors.candidates import CandidateDetector
    before = _mediapipe_threads()
    detector = CandidateDetector()
    assert detector.people is not None
    started = {tid: nice for tid, nice in _mediapipe_threads().items() if tid not in before}
    assert started and set(started.values()) == {_expected()}


def test_the_voice_embedding_worker_runs_below_the_caller():
    pytest.importorskip("resemblyzer")
    from jaeger_ros.detectors.voice_id import VoiceStream
    stream = VoiceStream(background=True)
    assert stream._worker.submit(_niceness).result(timeout=30) == _expected()


_PROBE = """
import json, sys
import numpy
from threadpoolctl import threadpool_info, threadpool_limits
threadpool_limits(limits=2, user_api="blas")   # a known start, whatever the machine's core count
from jaeger_ros.core.threads import one_thread_per_library
did = one_thread_per_library()
import scipy.linalg   # scipy's own OpenBLAS loads after the call
blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
import os, subprocess
child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('OMP_NUM_THREADS'))"],
                       capture_output=True, text=True).stdout.strip()
print(json.dumps([did, len(blas), sorted({p["num_threads"] for p in blas}), child]))
"""


@pytest.mark.parametrize("variable", [None, "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"])
def test_a_node_process_and_its_children_use_one_thread_per_library_unless_the_user_chose(variable):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if variable:
        env[variable] = "2"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    did, libraries, threads, child = json.loads(out.stdout.strip().splitlines()[-1])
    assert libraries >= 1
    assert did is (variable is None)
    if variable is None:
        assert threads == [1] and child == "1"   # numpy's BLAS, any loaded after (scipy's), a child process
    else:
        assert 2 in threads                      # numpy's keeps the count it had
        assert child == ("2" if variable == "OMP_NUM_THREADS" else "None")
