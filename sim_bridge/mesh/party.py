"""The party scenario's room in the mesh world: a sampled furnished room with the robot in its
free middle and the talkers placed around it by the procedural party's rules (sim_bridge.live.
party_layout), so the talker-map benchmark runs in both worlds.

Why a separate layout: a mesh room is a union of rectangles with catalogue furniture, stands and
objects standing on other objects, so "in the room", "clear of the walls" and "out of the way"
are the shell's and the mesh objects' own tests rather than the shoebox's.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from sim_bridge.loudspeakers import shape_ids
from sim_bridge.mesh.scene import MeshLoudspeaker, MeshScene, _number
from sim_bridge.scene import corridor, place_around, rect_distance

ROBOT_HALF_M = 0.6
"""Half the side of the square kept free around the robot's turning centre."""


def _free_middle(scene: MeshScene) -> np.ndarray | None:
    """World (x, z) of the centre of the shell's largest rectangle, or None when the robot's
    square does not fit there."""
    rects = np.asarray(scene.shell.rects, dtype=float)
    big = rects[int(np.argmax((rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])))]
    middle = np.array([(big[0] + big[2]) / 2.0, (big[1] + big[3]) / 2.0])
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * ROBOT_HALF_M + middle
    return middle if scene.shell.wall_clearance(square) >= 0.2 else None


def mesh_party_layout(scene: MeshScene, rng: np.random.Generator, talkers: int, azimuths_deg: tuple,
                      vfov_deg: float) -> tuple[MeshScene, float, float, float] | None:
    """As sim_bridge.live.party_layout for a sampled mesh room: the robot at the free middle,
    `talkers` procedural loudspeakers around it at azimuths_deg[k] (1.2-2.5 m, facing it, acoustic
    centres inside the mast camera's vertical field of view, pitch clipped to [-8, 0] deg), the
    room's own loudspeakers and their stands dropped, furniture in the way of the robot, a talker
    or a line of sight removed together with what stands on it. Returns (scene, robot x, y, yaw in
    map) or None when the talkers do not fit."""
    robot_w = _free_middle(scene)
    if robot_w is None:
        return None
    pitch = float(np.clip(scene.camera_pitch_deg, -8.0, 0.0))
    height = float(scene.camera_position[1])
    heading = float(rng.uniform(-np.pi, np.pi))  # map yaw
    placed = place_around(rng, robot_w, heading, azimuths_deg[:talkers], pitch, height, vfov_deg,
                          shape_ids(scene.split), lambda sid, at, yaw: MeshLoudspeaker(f"procedural:{sid}", at, yaw),
                          scene.shell.wall_clearance)
    if placed is None:
        return None
    robot = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * ROBOT_HALF_M + robot_w
    keep_clear = [robot] + [s.footprint() for s in placed] + \
        [corridor(robot_w, s.acoustic_center[[0, 2]], 0.3) for s in placed]
    gone = [o for o in scene.objects
            if o.category == "stand" or any(rect_distance(o.footprint(), c) <= 0.15 for c in keep_clear)]
    gone_ids = {id(o) for o in gone}
    gone_ids |= {id(o) for o in scene.objects if o.position[1] > 0.01 and id(o) not in gone_ids
                 and any(rect_distance(o.footprint(), g.footprint()) == 0.0 for g in gone)}
    objects = [o for o in scene.objects if id(o) not in gone_ids]
    out = replace(scene, objects=objects, loudspeakers=placed, camera_pitch_deg=pitch)
    _number(out)
    return out, float(robot_w[1]), float(robot_w[0]), heading
