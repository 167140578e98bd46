"""When and how the live world builds its next scene: half way through the current one, not at the
cut, where the build would take the cores from the node's detectors looking at the new view, and
at a lower priority than the stream (BUILD_NICE), so that it does not take them from the node's
frame path either."""
from __future__ import annotations

import os
import threading

from sim_bridge.live import BUILD_NICE, PREFETCH_AT, LiveConfig, LiveWorld


def test_the_next_scene_is_built_from_the_middle_of_the_current_one():
    world = LiveWorld(LiveConfig(seed=4, conditions="clean", width=96, height=72, scene_period_s=1.0))
    requested: dict[int, int] = {}   # scene -> stream sample at which its build was asked for
    niceness: dict[int, int] = {}    # scene -> the niceness of the thread that built it
    build = world._build

    def recording(k: int):
        requested.setdefault(k, world._next)
        niceness[k] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return build(k)

    world._build = recording
    try:
        world.start(0.0)
        while world._next < 2 * world.scene_samples + world.chunk:
            world.next_chunk()
            world.ground_truth(world.next_chunk_time)   # the node's frames ask for the scene too
    finally:
        world.close()
    assert sorted(requested) == [0, 1, 2]   # scene 3: not before scene 2 is half streamed
    assert requested[0] == 0
    for k in (1, 2):
        # asked for in scene k-1's second half, after its middle and before its end
        start = (k - 1) * world.scene_samples
        assert start + PREFETCH_AT * world.scene_samples <= requested[k] < k * world.scene_samples, requested
    # scene 0 is built before the clock starts, at the stream's priority; the others below it
    stream = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness[0] == stream and niceness[1] == niceness[2] == min(stream + BUILD_NICE, 19), niceness
