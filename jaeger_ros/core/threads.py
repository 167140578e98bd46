"""Background threads that yield to the frame path."""
from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

T = TypeVar("T")

BACKGROUND_NICE = 5
"""Niceness above the caller's of a node's background work (detectors, voice embeddings, the
dereverberation fit): the frame path keeps its 10 Hz, the results arrive a few frames later."""
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def lower_this_thread(by: int) -> None:
    """Raise the calling thread's niceness by `by` (Linux threads have their own): background work
    (a detector run, a simulator's next scene) then takes the cores only when the 10 Hz frame path
    leaves them. Elsewhere, or where it is not allowed, the thread keeps its priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + by)
    except (AttributeError, OSError):
        pass


def built_lowered(factory: Callable[[], T], by: int = BACKGROUND_NICE) -> T:
    """factory() run in a short-lived thread lowered by `by`, its result (or exception) handed back.
    Why: a library that starts worker threads when its object is built (mediapipe starts its
    graph's threads then) gives them the building thread's niceness, so models built in a node's
    main thread run at the frame path's priority even when only a background thread calls them."""
    out: dict[str, object] = {}

    def build() -> None:
        lower_this_thread(by)
        try:
            out["value"] = factory()
        except BaseException as err:  # handed to the caller, raised there
            out["error"] = err

    thread = threading.Thread(target=build, name="lowered-build")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]  # type: ignore[return-value]


def one_thread_per_library() -> bool:
    """One thread for BLAS (OpenBLAS, MKL, BLIS) and OpenMP (torch's intra-op pool) in this process
    and the processes it starts, unless the user set any of THREAD_VARIABLES; returns whether it
    did. Why: a node's arrays are small (a 0.5 s FOA window, votes x candidates, 32x32 crops), a
    second thread per library gains little, and on a robot's 2 shared cores each such pool is one
    more runnable thread at normal priority (OpenMP's spin after each parallel region included),
    doing even the lowered background work at the frame path's priority. live_demo sets it before
    it starts the nodes (so they start with it) and every node process at start (run_node).
    Live mesh world, mixed seed 13, 60 s runs alternated on the same machine: latency p95 78.9 /
    79.4 / 87.7 ms with the variables set for every process from its start (and the lowered builds
    above), 83.9 / 103.8 / 105.3 ms with neither; with only BLAS limited by each node process once
    numpy had loaded (threadpoolctl), 93.4 / 98.3 / 115.7 ms."""
    if any(name in os.environ for name in THREAD_VARIABLES):
        return False
    from threadpoolctl import threadpool_limits

    for name in THREAD_VARIABLES:   # read when a library loads (scipy's own BLAS, torch) and by children
        os.environ[name] = "1"
    threadpool_limits(limits=1)     # the libraries loaded already
    return True
