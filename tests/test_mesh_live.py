"""The live world in the mesh world: scenes are built in prefetch threads that end, so the one
GL context must move between threads (EGL refuses a context still current to another thread)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyrender")

from sim_bridge.live import LiveConfig, LiveWorld  # noqa: E402
from sim_bridge.mesh import catalogue  # noqa: E402

pytestmark = pytest.mark.skipif(not catalogue.load_catalogue(), reason="sweethome3d-furniture not installed")


def test_mesh_live_world_builds_scenes_in_threads_and_streams():
    world = LiveWorld(LiveConfig(world="mesh", width=160, height=120, seed=3, conditions="clean"))
    try:
        first = world.scene(0)          # built in thread scene-0
        second = world.scene(1)         # built in thread scene-1, after scene-0's thread ended
        for s in (first, second):
            assert s.rgb.shape == (120, 160, 3) and s.rgb.std() > 5
            assert 2 <= len(s.boxes) <= 3 and np.all(s.depth > 0)
        world.start(0.0)
        _, chunk = world.next_chunk()
        assert chunk.shape[0] == 4 and np.all(np.isfinite(chunk))
    finally:
        world.close()


def test_party_is_procedural_only():
    with pytest.raises(ValueError, match="world must be procedural or mesh"):
        LiveConfig(world="mesh", scenario="party")
