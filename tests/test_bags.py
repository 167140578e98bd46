"""Recorded bags end to end: a real recording of the live sim -> samples -> eval and training.

Every bag here is written by the recorder (or re-written from its messages with one defect),
read back with rosbags from the definitions embedded in the bag, and converted for real.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from scipy.spatial.transform import Rotation
import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin

from jaeger_ros.core import answers
from jaeger_ros.core import foa as foa_io
from jaeger_ros.data.bag_dataset import convert_bags
from jaeger_ros.data.bag_record import record
from jaeger_ros.data.dataset import find_manifests, generate, read_manifest
from jaeger_ros.core.geometry import wrapped_azimuth_error
from sim_bridge.live import LiveConfig, LiveWorld

REPO = Path(__file__).resolve().parents[1]
JAEGER = [sys.executable, "-m", "jaeger_ros.cli"]
SECONDS, RES, WINDOW = 4.0, (320, 240), 1.0
CHUNK_NS = 50_000_000


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*JAEGER, *args], capture_output=True, text=True, timeout=600, cwd=REPO)


def read_topic(bag: Path, topic: str) -> list[tuple[int, object]]:
    """(log time, message) on one topic, decoded from the bag's own definitions only."""
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(connections=conns)]


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "single"
    # clean sensing: these tests check time alignment and labels, not robustness to noise
    proc = run("record", "--duration", str(SECONDS), "--out", str(out), "--resolution", "320x240", "--seed", "3",
               "--conditions", "clean")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1])["frames"] == 40
    return out


@pytest.fixture(scope="module")
def converted(bag, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("from_bag")
    proc = run("dataset", "from-bag", str(bag), "--out", str(root), "--split", "test", "--window-s", str(WINDOW))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root, json.loads(proc.stdout.splitlines()[-1])


def test_bag_holds_every_topic_with_embedded_definitions(bag):
    with AnyReader([bag]) as reader:  # no typestore given: only what the bag embeds
        conns = {c.topic: c for c in reader.connections}
        assert all(c.msgdef.data for c in reader.connections)
    expected = {"/camera/color/image_raw": 40, "/camera/depth/image_raw": 40, "/camera/color/camera_info": 40,
                "/audio/foa": 80, "/sim/ground_truth": 40, "/tf": 40, "/tf_static": 1}
    assert {t: conns[t].msgcount for t in expected} == expected
    assert conns["/audio/foa"].msgtype == "jaeger_ros/msg/FoaAudio"
    assert (bag / "single.mcap").is_file()
    audio = read_topic(bag, "/audio/foa")
    stamps = np.array([stamp_ns(m) for _, m in audio])
    assert np.all(np.diff(stamps) == CHUNK_NS)  # contiguous stream, stamped at the first sample
    assert all(t == stamp_ns(m) + CHUNK_NS for t, m in audio)  # logged when the last sample is captured
    frames = read_topic(bag, "/camera/color/image_raw")
    assert stamps[0] == stamp_ns(frames[0][1])  # stream and camera share one clock
    assert {(m.width, m.height, m.encoding) for _, m in frames} == {(320, 240, "rgb8")}


def _matrix(r, t) -> np.ndarray:
    """4x4 from a quaternion and a translation (Transform or Pose fields)."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat([r.x, r.y, r.z, r.w]).as_matrix()
    m[:3, 3] = [t.x, t.y, t.z]
    return m


def test_bag_tf_is_the_live_tree_and_composes_to_the_camera_pose(bag):
    """/tf and /tf_static hold the links sim_bridge publishes live (sim_bridge.live.tf_links):
    moving links every frame stamped like it, fixed ones once; map -> ... -> optical equals the
    ground-truth camera pose."""
    (log_ns, static), = read_topic(bag, "/tf_static")
    dynamic = read_topic(bag, "/tf")
    frames = read_topic(bag, "/camera/color/image_raw")
    truth = {stamp_ns(m): m for _, m in read_topic(bag, "/sim/ground_truth")}
    optical = frames[0][1].header.frame_id
    assert optical == "camera_color_optical_frame"
    assert [(x.header.frame_id, x.child_frame_id) for x in static.transforms] == [("map", "odom"),
                                                                                  ("camera_link", optical)]
    assert log_ns == stamp_ns(frames[0][1]) == stamp_ns(static.transforms[0])
    assert [stamp_ns(x) for _, m in dynamic for x in m.transforms] == [stamp_ns(f) for _, f in frames for _ in (0, 1)]
    fixed = {x.child_frame_id: _matrix(x.transform.rotation, x.transform.translation) for x in static.transforms}
    np.testing.assert_allclose(fixed["odom"], np.eye(4), atol=1e-12)
    for _, msg in dynamic:
        assert [(x.header.frame_id, x.child_frame_id) for x in msg.transforms] == [("odom", "base_link"),
                                                                                   ("base_link", "camera_link")]
        odom_base, base_link = (_matrix(x.transform.rotation, x.transform.translation) for x in msg.transforms)
        assert all(x.transform.rotation.w >= 0 for x in msg.transforms)
        assert abs(odom_base[2, 3]) < 1e-9 and odom_base[2, 2] == pytest.approx(1.0)  # on the floor, yaw only
        gt = truth[stamp_ns(msg.transforms[0])]
        expected = _matrix(gt.camera_pose.orientation, gt.camera_pose.position)
        np.testing.assert_allclose(fixed["odom"] @ odom_base @ base_link @ fixed[optical], expected, atol=1e-9)


def test_bag_keeps_each_scenes_room_origin_and_places_the_camera_and_talkers_in_that_room(tmp_path):
    """Across a scene cut (the live world's 8 s period) the room moves to its own place in map:
    the recorded room_origin, room_size, camera pose and source positions agree with each other."""
    out = tmp_path / "two_rooms"
    record(out, 9.0, width=96, height=72, rate_hz=2.0, seed=3, conditions="clean", progress=False)
    rooms = {}
    for _, gt in read_topic(out, "/sim/ground_truth"):
        lo = np.array([gt.room_origin.x, gt.room_origin.y, gt.room_origin.z])
        hi = lo + [gt.room_size.x, gt.room_size.y, gt.room_size.z]
        rooms.setdefault(gt.scene_id, (lo, hi))
        camera = gt.camera_pose.position
        inside = [np.array([camera.x, camera.y, camera.z])] + [np.array([s.position.x, s.position.y, s.position.z])
                                                               for s in gt.sources]
        assert all(np.all(lo < p) and np.all(p < hi) for p in inside)
    assert sorted(rooms) == [0, 1]
    np.testing.assert_allclose(rooms[0][0], 0.0, atol=1e-12)
    # each talker's direct-to-reverberant ratio is recorded as the live world states it
    world = LiveWorld(LiveConfig(seed=3, conditions="clean", width=96, height=72))
    world.start(0.0)
    for _, gt in read_topic(out, "/sim/ground_truth"):
        assert [s.drr_db for s in gt.sources] == pytest.approx([v.drr_db for v in world.scene(gt.scene_id).voices],
                                                               abs=1e-4)
    assert rooms[1][0][0] > rooms[0][1][0] + 5.0  # the second room lies beyond the first along map x


def test_ground_truth_activity_agrees_with_the_recorded_audio(bag):
    """Activity flags are computed on stream time; recorded in stream time they must match the
    sound: windows just before a frame where a voice has talked for a while are loud, windows
    where nobody talked for 0.3 s are quiet."""
    audio = read_topic(bag, "/audio/foa")
    t0 = stamp_ns(audio[0][1])
    w = np.concatenate([np.asarray(m.data, np.float32).reshape(4, -1)[0] for _, m in audio])
    loud, quiet = [], []
    for _, gt in read_topic(bag, "/sim/ground_truth"):
        end = (stamp_ns(gt) - t0) * 16000 // 1_000_000_000
        if end < 4000:
            continue
        rms = float(np.sqrt(np.mean(w[end - 4000:end] ** 2)))
        s = gt.sources[0]
        if s.active and s.active_for_s >= 0.3:
            loud.append(rms)
        elif not s.active:
            quiet.append(rms)
    assert loud and quiet
    assert np.median(loud) > 10 * np.median(quiet), (loud, quiet)


def test_samples_match_the_ground_truth_topic(bag, converted):
    root, report = converted
    truth = {stamp_ns(m): m for _, m in read_topic(bag, "/sim/ground_truth")}
    assert report["frames"] == 40
    assert report["folders"] + sum(report["skipped"].values()) == 40
    assert report["entries"] == {"A": report["folders"], "C": report["folders"], "D": report["folders"]}
    t0 = min(truth)
    usable = [t for t, m in truth.items() if t - t0 >= WINDOW * 1e9 and m.sources[0].active
              and m.sources[0].active_for_s >= 0.5]
    assert report["folders"] == len(usable) > 0  # single talker: every talking frame with a full window
    manifests = {k: read_manifest(p) for k, p in find_manifests(root, "test").items()}
    assert set(manifests) == {"A", "C", "D"}
    for a, d in zip(manifests["A"], manifests["D"]):
        meta = json.loads((root / a.path / "metadata.json").read_text())
        gt = truth[meta["bag"]["stamp_ns"]]
        src = gt.sources[0]
        assert a.text == answers.format_doa(src.azimuth_deg, src.elevation_deg)
        assert d.path == a.path and d.text == src.label and d.num_speakers == len(gt.boxes)
        foa, rate = foa_io.read_foa_wav(root / a.path / "foa_ls.wav")
        assert rate == 16000 and foa.shape == (4, int(WINDOW * 16000))
        assert meta["intrinsics"]["width"] == 320 and meta["boxes"][0]["bbox_id"] == 0


def test_classical_eval_runs_on_the_converted_bag(converted, tmp_path):
    root, _ = converted
    proc = run("eval", "--method", "classical", "--data", str(root), "--split", "test", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["tasks"]) == {"A", "C", "D"}
    assert report["tasks"]["A"]["n_unparsed"] == 0 and report["tasks"]["A"]["az_median"] < 30


def _tiny_recipe(**changes):
    from jaeger_ros.model.config import TrainConfig

    base = dict(max_steps=3, batch_size=4, eval_every=1000, save_every=3, log_every=1, warmup_steps=1,
                eval_samples=1, mixed_precision="no", num_workers=0, lr=2e-3, tasks=("A", "C", "D"))
    return TrainConfig(**{**base, **changes})


def _tiny_model_config():
    from jaeger_ros.model.config import TrainConfig

    return TrainConfig().model_config(REPO / "config").replace(
        iv="classical", max_audio_seconds=0.5, image_size=[112, 56], max_new_tokens=8)


def test_training_mixes_a_bag_set_and_a_generated_set(bag, tmp_path):
    from jaeger_ros.data.evaluation import evaluate
    from jaeger_ros.model.data import load_examples
    from jaeger_ros.model.predictor import JaegerMethod
    from jaeger_ros.model.train import _Sources, train

    bag_root, gen_root = tmp_path / "bagdata", tmp_path / "gen"
    convert_bags([bag], bag_root, split="train", tasks="ACD", window_s=WINDOW, progress=False)
    generate(gen_root, "train", 2, seed=1, tasks="ACD", resolution=(224, 126), progress=False)
    sources = [load_examples(bag_root, "train", "ACD"), load_examples(gen_root, "train", "ACD")]
    drawn = _Sources(sources, [0.0, 1.0], seed=0)
    picks = [drawn.examples[i] for i, _ in drawn.batch(0, 16)]
    assert all(str(gen_root) in ex.folder for ex in picks)  # a zero weight never draws its source
    drawn = _Sources(sources, [1.0, 1.0], seed=0)
    picks = [drawn.examples[i] for i, _ in drawn.batch(0, 64)]
    assert 10 < sum(str(bag_root) in ex.folder for ex in picks) < 54

    out = train(_tiny_recipe(source_weights=[1.0, 1.0]), _tiny_model_config(), [str(bag_root), str(gen_root)],
                tmp_path / "run", progress=False)
    assert (out / "model.safetensors").is_file()
    method = JaegerMethod.from_checkpoint(out, device="cpu")
    report = evaluate(method, bag_root, split="train", tasks=["D"], progress=False)
    assert report["tasks"]["D"]["n"] == len(sources[0]) // 3

    # fine-tune that checkpoint on the bag set alone: it starts from its weights, moves them, loads back
    tuned = train(_tiny_recipe(max_steps=2, init_from=str(out)), _tiny_model_config(), [str(bag_root)],
                  tmp_path / "tuned", progress=False)
    before, after = load_file(str(out / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    assert before.keys() == after.keys()
    step = max(float((before[k].float() - after[k].float()).abs().max()) for k in before)
    assert 0 < step < 0.05  # two small optimiser steps away from the checkpoint, not a fresh init
    report = evaluate(JaegerMethod.from_checkpoint(tuned, device="cpu"), bag_root, split="train", tasks=["D"],
                      progress=False)
    assert report["tasks"]["D"]["n"] == len(sources[0]) // 3


def test_bag_records_the_offered_qos_so_playback_latches_tf_static(bag):
    """ros2 bag play republishes each topic with its recorded offered QoS: /tf_static must come back
    reliable + transient local (a late TF listener gets the static transforms); everything
    sim_bridge publishes is reliable; the other topics are volatile."""
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    profiles = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
                for t in metadata["topics_with_message_count"]}
    assert len(profiles) == 7 and all(len(p) == 1 for p in profiles.values()), profiles
    for topic, (profile,) in profiles.items():
        assert profile["reliability"] == "reliable", topic
        assert profile["durability"] == ("transient_local" if topic == "/tf_static" else "volatile"), topic
    with AnyReader([bag]) as reader:  # and a rosbag2 reader parses them back
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert qos["/tf_static"][0].durability == QosDurability.TRANSIENT_LOCAL
    assert qos["/tf_static"][0].reliability == QosReliability.RELIABLE
    assert qos["/camera/color/image_raw"][0].durability == QosDurability.VOLATILE


def test_no_scene_build_outlives_the_recording(tmp_path):
    """The live world prefetches the next scene in a daemon thread; one still running inside native
    code when `jaeger record` exits can abort the interpreter (`terminate called without an active
    exception`), so record() waits for it before returning."""
    record(tmp_path / "b", 0.5, width=160, height=120, seed=2, progress=False)
    assert [t.name for t in threading.enumerate() if t.name.startswith("scene-")] == []


def test_sqlite3_bags_convert_like_mcap(tmp_path):
    bag = tmp_path / "sq"
    stats = record(bag, 2.0, storage="sqlite3", width=160, height=120, seed=5, progress=False)
    assert stats.frames == 20 and (bag / "sq.db3").is_file()
    report = convert_bags([bag], tmp_path / "data", split="test", window_s=0.5, min_active_s=0.2, progress=False)
    assert report.frames == 20 and report.folders + sum(report.skipped.values()) == 20


def rewrite(src: Path, dst: Path, edit) -> None:
    """Copy a bag message by message; edit(topic, msg) returns the message to write or None."""
    with AnyReader([src]) as reader:
        writer = Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest)
                 for c in reader.connections}
        for c, t, raw in reader.messages():
            msg = edit(c.topic, reader.deserialize(raw, c.msgtype))
            if msg is not None:
                writer.write(conns[c.id], t, reader.typestore.serialize_cdr(msg, c.msgtype))
        writer.close()


def from_bag_error(bag: Path, tmp_path: Path, *extra: str) -> str:
    proc = run("dataset", "from-bag", str(bag), "--out", str(tmp_path / "out"), *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "train").exists()
    assert [p for p in (tmp_path / "out").iterdir()] == []  # nothing half-written
    lines = [line for line in proc.stderr.splitlines() if line.startswith("jaeger: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_truncated_bag_is_a_clear_error(bag, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(bag, cut)
    (cut / "single.mcap").rename(cut / "cut.mcap")
    meta = (cut / "metadata.yaml").read_text().replace("single.mcap", "cut.mcap")
    (cut / "metadata.yaml").write_text(meta)
    data = (cut / "cut.mcap").read_bytes()
    (cut / "cut.mcap").write_bytes(data[:len(data) // 2])
    assert "corrupt or truncated" in from_bag_error(cut, tmp_path)


@pytest.mark.parametrize("metadata", [True, False])
def test_a_bag_cut_at_98_percent_is_salvaged_with_its_loss_counted(bag, tmp_path, metadata):
    """A recorder killed mid-write: no MCAP footer (and, killed early enough, no metadata.yaml)."""
    cut = tmp_path / "killed"
    shutil.copytree(bag, cut)
    data = (cut / "single.mcap").read_bytes()
    (cut / "single.mcap").write_bytes(data[:int(len(data) * 0.98)])
    if not metadata:
        (cut / "metadata.yaml").unlink()
    proc = run("dataset", "from-bag", str(cut), "--out", str(tmp_path / "out"), "--window-s", str(WINDOW))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    (salvaged,) = report["salvaged"]
    with AnyReader([bag]) as reader:
        total = reader.message_count
    assert salvaged["messages_read"] < total and salvaged["bytes_unread"] > 0
    assert salvaged["messages_lost"] == (total - salvaged["messages_read"] if metadata else None)
    assert report["folders"] > 0 and len(list((tmp_path / "out" / "train").glob("task1_*"))) == report["folders"]


def test_corrupt_bytes_are_a_clear_error(bag, tmp_path):
    bad = tmp_path / "single"
    shutil.copytree(bag, bad)
    data = bytearray((bad / "single.mcap").read_bytes())
    data[len(data) // 3:len(data) // 3 + 4096] = b"\xff" * 4096
    (bad / "single.mcap").write_bytes(bytes(data))
    assert "corrupt or truncated" in from_bag_error(bad, tmp_path)


def test_not_a_bag_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "not a rosbag2 bag" in from_bag_error(tmp_path / "empty", tmp_path)


def test_missing_topic_is_a_clear_error(bag, tmp_path):
    rewrite(bag, tmp_path / "no_audio", lambda topic, msg: None if topic == "/audio/foa" else msg)
    assert "missing topic(s) /audio/foa" in from_bag_error(tmp_path / "no_audio", tmp_path)


def test_audio_gap_is_an_error_or_skipped_on_request(bag, tmp_path):
    chunks = iter(range(10 ** 6))

    def drop_one(topic, msg):
        return None if topic == "/audio/foa" and next(chunks) == 50 else msg

    rewrite(bag, tmp_path / "gap", drop_one)
    assert "FOA audio gap of 0.050 s" in from_bag_error(tmp_path / "gap", tmp_path, "--window-s", "1")
    report = convert_bags([tmp_path / "gap"], tmp_path / "ok", window_s=WINDOW, allow_gaps=True, progress=False)
    assert report.skipped["audio gap in window"] > 0  # frames 2.55-3.5 s hear the hole
    metas = [json.loads(p.read_text()) for p in (tmp_path / "ok" / "train").glob("task1_*/metadata.json")]
    gap = (2.5e9, 2.55e9)
    t0 = stamp_ns(read_topic(bag, "/audio/foa")[0][1])
    for m in metas:
        end = m["bag"]["stamp_ns"] - t0
        assert not (end - WINDOW * 1e9 < gap[1] and end > gap[0])


def test_clock_jump_is_a_clear_error(bag, tmp_path):
    def jump(topic, msg):
        if topic == "/audio/foa" and msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec >= T_JUMP[0]:
            msg.header.stamp.sec -= 5
        return msg

    T_JUMP = [stamp_ns(read_topic(bag, "/audio/foa")[40][1])]
    rewrite(bag, tmp_path / "jump", jump)
    assert "clock jump" in from_bag_error(tmp_path / "jump", tmp_path)


def test_wrong_message_type_is_a_clear_error(bag, tmp_path):
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic != "/camera/color/camera_info"]
        info = next(c for c in reader.connections if c.topic == "/camera/color/camera_info")
        with Writer(tmp_path / "wrong", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            out = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest) for c in conns}
            img = next(c for c in conns if c.topic == "/camera/color/image_raw")
            fake = writer.add_connection(info.topic, img.msgtype, msgdef=img.msgdef.data, rihs01=img.digest)
            for c, t, raw in reader.messages(connections=conns):
                writer.write(out[c.id], t, raw)
                if c.topic == "/camera/color/image_raw":
                    writer.write(fake, t, raw)
    line = from_bag_error(tmp_path / "wrong", tmp_path)
    assert "/camera/color/camera_info has message type sensor_msgs/msg/Image" in line


def test_sidecar_annotation_labels_a_bag_without_ground_truth(bag, tmp_path):
    """A hardware-style bag: no /sim/ground_truth; labels come from a sidecar file built from
    what the simulator knew. Matching labels agree with the ground-truth conversion."""
    truth = [m for _, m in read_topic(bag, "/sim/ground_truth")]
    gt0 = truth[0]
    active = [stamp_ns(m) for m in truth if m.sources[0].active]
    first = next(m for m in truth if m.sources[0].active)
    start = (stamp_ns(first) - first.sources[0].active_for_s * 1e9) * 1e-9
    # one utterance per run of active frames (recorded stamps are 0.1 s apart)
    runs, begin = [], active[0]
    for a, b in zip(active, active[1:] + [None]):
        if b is None or b - a > 150_000_000:
            runs.append([begin * 1e-9, a * 1e-9 + 0.1])
            begin = b
    runs[0][0] = start
    boxes = [{"center": [b.center.position.x, b.center.position.y, b.center.position.z],
              "size": [b.size.x, b.size.y, b.size.z]} for b in gt0.boxes]
    src = gt0.sources[0]
    annotation = {"format": "jaeger_ros.bag_annotation/1", "segments": [
        {"start": stamp_ns(truth[0]) * 1e-9, "end": stamp_ns(truth[-1]) * 1e-9 + 0.1, "boxes": boxes[::-1],
         "talkers": [{"gender": src.gender, "loudspeaker": len(boxes) - 1 - src.loudspeaker, "intervals": runs}]}]}
    assert len({m.scene_id for m in truth}) == 1
    side = tmp_path / "labels.json"
    side.write_text(json.dumps(annotation))
    rewrite(bag, tmp_path / "hw", lambda topic, msg: None if topic == "/sim/ground_truth" else msg)
    proc = run("dataset", "from-bag", str(tmp_path / "hw"), "--out", str(tmp_path / "d"), "--window-s", str(WINDOW),
               "--annotation", str(side))
    assert proc.returncode == 0, proc.stderr[-2000:]
    by_stamp = {stamp_ns(m): m for m in truth}
    d = read_manifest(tmp_path / "d" / "train" / "manifests" / "D.json")
    a = read_manifest(tmp_path / "d" / "train" / "manifests" / "A.json")
    assert len(d) > 0
    for entry, doa in zip(d, a):
        meta = json.loads((tmp_path / "d" / entry.path / "metadata.json").read_text())
        gt = by_stamp[meta["bag"]["stamp_ns"]].sources[0]
        assert entry.text == gt.label
        parsed = answers.parse_answer("A", doa.text)
        assert abs(wrapped_azimuth_error(parsed.azimuth, gt.azimuth_deg)) < 10  # box centre vs acoustic centre
