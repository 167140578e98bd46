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


def test_unknown_world_is_refused_and_party_runs_in_both():
    with pytest.raises(ValueError, match="world must be procedural or mesh"):
        LiveConfig(world="photo", scenario="party")
    assert LiveConfig(world="mesh", scenario="party").world == "mesh"  # see test_party_mesh.py


def test_live_demo_names_the_world_and_its_engines(tmp_path):
    """`live_demo --world mesh` prints the renderer and the acoustic engine that actually runs
    (rlr where it imports, else its fallback); without --world the params file decides."""
    import importlib.util

    from jaeger_ros.ros.live_demo import world_line

    params = tmp_path / "p.yaml"
    params.write_text("sim_bridge:\n  ros__parameters:\n    world: mesh\n")
    sound = "rlr" if importlib.util.find_spec("rlr_audio_propagation") else "pyroomacoustics"
    for line in (world_line("mesh", params), world_line(None, params)):
        assert line.startswith("world: mesh (render pyrender/") and line.endswith(f"acoustics {sound})")
    params.write_text("sim_bridge:\n  ros__parameters:\n    seed: 1\n")
    assert world_line(None, params).startswith("world: procedural")
