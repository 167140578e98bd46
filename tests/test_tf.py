"""sim_bridge's TF tree over real rclpy (private random domain, localhost only).

A real SimBridgeNode publishes; a real subscriber collects /tf, /tf_static, the colour image
and /sim/ground_truth. tf2_ros (Python) is not available here, so the transforms are composed
with numpy: the chain map -> odom -> base_link -> camera_link -> optical must be complete,
stamped like the images, latched on /tf_static, and carry ground-truth boxes from the optical
frame to where the simulator put them in `map`.
"""
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from jaeger_ros.core.answers import azimuth_order
from jaeger_ros.msg import SimGroundTruth
from sim_bridge.live import MAP_FROM_WORLD

OPTICAL = "camera_color_optical_frame"
CHAIN = ["map", "odom", "base_link", "camera_link", OPTICAL]
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


def key(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def matrix(transform) -> np.ndarray:
    """4x4 parent_from_child of a geometry_msgs/Transform."""
    r, t = transform.rotation, transform.translation
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat([r.x, r.y, r.z, r.w]).as_matrix()
    m[:3, 3] = [t.x, t.y, t.z]
    return m


def spin_for(executor, seconds, until=lambda: False) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        executor.spin_once(timeout_sec=0.01)


@pytest.fixture(scope="module")
def recorded():
    """Two scenes of sim_bridge (1.5 s each at 160x120), what a listener received, and the node's
    world (for the simulator's own answers), plus /tf_static as seen by a late subscriber."""
    from sim_bridge.node import SimBridgeNode

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 200))
    sim = SimBridgeNode(context=ctx, parameter_overrides=[
        Parameter("scene_period_s", value=1.5), Parameter("width", value=160), Parameter("height", value=120),
        Parameter("speech_pool", value=2), Parameter("seed", value=5)])
    listener = rclpy.create_node("tf_listener", context=ctx)
    got = {"tf": [], "static": [], "late_static": [], "images": {}, "truth": {}, "scenes": {}}

    def on_truth(msg) -> None:
        got["truth"][key(msg.header.stamp)] = msg
        # the simulator's own answer, while the scene is still in the world's cache
        got["scenes"].setdefault(msg.scene_id, sim.world.scene(msg.scene_id))

    listener.create_subscription(TFMessage, "/tf", got["tf"].append, 100)
    listener.create_subscription(TFMessage, "/tf_static", got["static"].append, LATCHED)
    listener.create_subscription(Image, "/camera/color/image_raw",
                                 lambda m: got["images"].__setitem__(key(m.header.stamp), m.header.frame_id),
                                 qos_profile_sensor_data)
    listener.create_subscription(SimGroundTruth, "/sim/ground_truth", on_truth, 50)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(sim)
    executor.add_node(listener)
    try:
        spin_for(executor, 20.0, until=lambda: len(got["scenes"]) >= 2 and len(got["truth"]) >= 20)
        late = rclpy.create_node("late_listener", context=ctx)  # joins long after /tf_static went out
        late.create_subscription(TFMessage, "/tf_static", got["late_static"].append, LATCHED)
        executor.add_node(late)
        spin_for(executor, 3.0, until=lambda: bool(got["late_static"]))
        late.destroy_node()
    finally:
        sim.destroy_node()
        listener.destroy_node()
        rclpy.shutdown(context=ctx)
    return got


def test_tf_chain_is_complete_and_stamped_like_the_images(recorded):
    got = recorded
    assert len(got["static"]) == 1, "fixed links go out once"
    static = got["static"][0].transforms
    assert [(t.header.frame_id, t.child_frame_id) for t in static] == [("map", "odom"), ("camera_link", OPTICAL),
                                                                       ("camera_link", "mic_link")]
    mic = matrix(static[2].transform)  # the microphone at the camera, REP-103 axes like camera_link
    np.testing.assert_allclose(mic, np.eye(4), atol=1e-12)
    assert len(got["tf"]) >= 20
    for msg in got["tf"]:
        links = [(t.header.frame_id, t.child_frame_id) for t in msg.transforms]
        assert links == [("odom", "base_link"), ("base_link", "camera_link")]
        assert len({key(t.header.stamp) for t in msg.transforms}) == 1
    edges = {(t.header.frame_id, t.child_frame_id) for m in [*got["static"], *got["tf"]] for t in m.transforms}
    assert edges == set(zip(CHAIN, CHAIN[1:])) | {("camera_link", "mic_link")}  # one tree, no stray frames
    tf_stamps = [key(m.transforms[0].header.stamp) for m in got["tf"]]
    assert len(set(tf_stamps)) == len(tf_stamps)
    # every frame has its TF at exactly its stamp, and every TF stamp is a frame's
    assert set(got["truth"]) <= set(tf_stamps) and set(tf_stamps) <= set(got["truth"])
    assert got["images"] and set(got["images"]) <= set(tf_stamps)
    assert set(got["images"].values()) == {OPTICAL}
    assert {m.header.frame_id for m in got["truth"].values()} == {OPTICAL}
    assert key(static[0].header.stamp) <= min(tf_stamps)  # sent at start-up, before the first frame


def test_tf_static_is_latched_for_late_subscribers(recorded):
    (late,) = recorded["late_static"]
    assert late.transforms == recorded["static"][0].transforms


def _map_from_optical(recorded, stamp: int) -> np.ndarray:
    """The received chain map -> odom -> base_link -> camera_link -> optical at one frame's stamp."""
    fixed = {t.child_frame_id: matrix(t.transform) for t in recorded["static"][0].transforms}
    moving = next(m for m in recorded["tf"] if key(m.transforms[0].header.stamp) == stamp)
    odom_base, base_link = (matrix(t.transform) for t in moving.transforms)
    assert abs(odom_base[2, 3]) < 1e-9 and odom_base[2, 2] == pytest.approx(1.0)  # on the floor, yaw only
    return fixed["odom"] @ odom_base @ base_link @ fixed[OPTICAL]


CAMERA_FROM_OPTICAL = np.diag([1.0, -1.0, -1.0])
"""JAEGER camera (y up, z back) <- ROS optical (y down, z forward)."""


def test_boxes_from_ground_truth_reach_their_place_in_map_through_tf(recorded):
    got = recorded
    fixed = {t.child_frame_id: matrix(t.transform) for t in got["static"][0].transforms}
    np.testing.assert_allclose(fixed["odom"], np.eye(4), atol=1e-12)
    checked = set()
    for stamp, gt in got["truth"].items():
        map_from_optical = _map_from_optical(got, stamp)
        scene = got["scenes"][gt.scene_id].scene
        world_from_camera = np.asarray(scene.world_from_camera(), dtype=float)
        room = np.array([gt.room_size.x, gt.room_size.y, gt.room_size.z])
        origin = np.array([gt.room_origin.x, gt.room_origin.y, gt.room_origin.z])
        for box, spk in zip(gt.boxes, [scene.loudspeakers[i] for i in _left_to_right(scene)]):
            p = box.center.position
            centre_optical = np.array([p.x, p.y, p.z, 1.0])
            in_room = map_from_optical @ centre_optical - np.r_[origin, 0.0]  # relative to the room's corner
            truth = MAP_FROM_WORLD @ world_from_camera @ np.r_[CAMERA_FROM_OPTICAL @ centre_optical[:3], 1.0]
            assert np.linalg.norm(in_room[:3] - truth[:3]) < 1e-3  # within 1 mm
            # and near the loudspeaker itself (its acoustic centre lies inside its box)
            acoustic = MAP_FROM_WORLD[:3, :3] @ np.asarray(spk.acoustic_center, dtype=float)
            assert np.linalg.norm(in_room[:3] - acoustic) <= np.linalg.norm([box.size.x, box.size.y, box.size.z]) / 2
            assert np.all(in_room[:3] > 0) and np.all(in_room[:3] < room)  # inside the room
        checked.add(gt.scene_id)
    assert len(checked) >= 2  # across a scene change, when the moving links jump


def test_each_scenes_room_has_its_own_place_in_map_and_its_sources_are_where_tf_puts_them(recorded):
    """A tracker keeps talkers in map: the next scene's room must not lie where the last one was,
    and a source's published map position is where the TF chain puts its camera-frame position."""
    rooms = {}
    for stamp, gt in recorded["truth"].items():
        origin = np.array([gt.room_origin.x, gt.room_origin.y, gt.room_origin.z])
        rooms.setdefault(gt.scene_id, (origin, origin + [gt.room_size.x, gt.room_size.y, gt.room_size.z]))
        map_from_optical = _map_from_optical(recorded, stamp)
        live = recorded["scenes"][gt.scene_id]
        camera_from_world = np.linalg.inv(np.asarray(live.scene.world_from_camera(), dtype=float))
        assert np.all(map_from_optical[:3, 3] > rooms[gt.scene_id][0])  # the camera is inside its room
        assert np.all(map_from_optical[:3, 3] < rooms[gt.scene_id][1])
        assert len(gt.sources) == len(live.voices) > 0
        for source, voice in zip(gt.sources, live.voices):
            centre = np.append(live.scene.loudspeakers[voice.loudspeaker].acoustic_center, 1.0)
            optical = np.r_[CAMERA_FROM_OPTICAL @ (camera_from_world @ centre)[:3], 1.0]
            published = np.array([source.position.x, source.position.y, source.position.z])
            assert np.linalg.norm((map_from_optical @ optical)[:3] - published) < 1e-3
            assert np.all(published > rooms[gt.scene_id][0]) and np.all(published < rooms[gt.scene_id][1])
    (lo0, hi0), (lo1, hi1) = rooms[0], rooms[1]
    np.testing.assert_allclose(lo0, 0.0, atol=1e-12)  # the first room where it always was
    assert lo1[2] == lo0[2] == 0.0  # floors at one height: the base drives on z = 0
    assert lo1[0] - hi0[0] > 5.0 or lo0[0] - hi1[0] > 5.0  # apart along map x, far beyond a track gate


def _left_to_right(scene) -> list[int]:
    """Loudspeaker indices in the order of the ground-truth boxes (left to right by azimuth)."""
    return azimuth_order(scene.loudspeaker_boxes_camera())


def test_rviz_config_shows_the_tree_camera_and_markers_in_map():
    config = Path(__file__).resolve().parents[1] / "config"
    rviz = yaml.safe_load((config / "jaeger.rviz").read_text())["Visualization Manager"]
    params = yaml.safe_load((config / "sim.yaml").read_text())
    assert rviz["Global Options"]["Fixed Frame"] == "map"
    shown = {d["Class"].split("/")[-1]: d for d in rviz["Displays"] if d["Enabled"]}
    assert {"Grid", "TF", "Image", "MarkerArray"} <= set(shown)
    assert shown["Grid"]["Plane"] == "XY"  # the floor of a z-up map
    # the params file names topics relative to the nodes' namespace; RViz (root namespace) resolved
    assert shown["Image"]["Topic"]["Value"] == "/" + params["sim_bridge"]["ros__parameters"]["color_topic"]
    assert shown["Image"]["Topic"]["Reliability Policy"] == "Best Effort"  # matches reliable and best-effort
    assert shown["MarkerArray"]["Topic"]["Value"] == "/" + params["jaeger_node"]["ros__parameters"]["markers_topic"]
