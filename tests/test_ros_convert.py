"""Message conversions round trip and keep JAEGER's conventions at the ROS edge."""
import numpy as np
import pytest

from jaeger_ros.core import foa
from jaeger_ros.core import geometry
from jaeger_ros.ros import convert as rc


def header(t=12.25, frame="camera_color_optical_frame"):
    return rc.make_header(t, frame)


def test_stamp_round_trip_keeps_nanoseconds():
    for t in (0.0, 1.5, 1700000000.123456789, 3.999999999):
        assert abs(rc.stamp_to_seconds(rc.seconds_to_stamp(t)) - t) < 2e-9


@pytest.mark.parametrize("encoding,dtype,shape", [("rgb8", np.uint8, (5, 7, 3)), ("bgr8", np.uint8, (5, 7, 3)),
                                                   ("mono8", np.uint8, (4, 3)), ("32FC1", np.float32, (6, 4)),
                                                   ("16UC1", np.uint16, (3, 9))])
def test_image_round_trip(encoding, dtype, shape):
    rng = np.random.default_rng(0)
    a = (rng.random(shape) * 200).astype(dtype)
    msg = rc.numpy_to_image(a, encoding, header())
    assert msg.encoding == encoding and msg.height == shape[0] and msg.width == shape[1]
    np.testing.assert_array_equal(rc.image_to_numpy(msg), a)


def test_bgr_becomes_rgb_and_padded_rows_are_read():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255  # red
    msg = rc.numpy_to_image(np.ascontiguousarray(rgb[..., ::-1]), "bgr8", header())
    np.testing.assert_array_equal(rc.rgb_from_image(msg), rgb)
    # rows padded to 12 bytes (step > width * 3), as some drivers send
    padded = rc.numpy_to_image(rgb, "rgb8", header())
    data = bytes(padded.data)
    padded.data = b"".join(data[r * 9:(r + 1) * 9] + b"\x00\x00\x00" for r in range(2))
    padded.step = 12
    np.testing.assert_array_equal(rc.rgb_from_image(padded), rgb)


def test_depth_encodings_in_metres():
    d = np.array([[0.0, 1.234], [np.nan, 4.5]], np.float32)
    m32 = rc.depth_to_image(d, header(), "32FC1")
    assert np.isnan(rc.image_to_numpy(m32)[0, 0])  # REP-118: no return = NaN on the wire
    np.testing.assert_allclose(rc.depth_from_image(m32), [[0, 1.234], [0, 4.5]], atol=1e-6)
    m16 = rc.depth_to_image(d, header(), "16UC1")
    np.testing.assert_array_equal(rc.image_to_numpy(m16), [[0, 1234], [0, 4500]])
    np.testing.assert_allclose(rc.depth_from_image(m16), [[0, 1.234], [0, 4.5]], atol=1e-6)


def test_bad_images_raise():
    msg = rc.numpy_to_image(np.zeros((4, 4), np.float32), "32FC1", header())
    msg.data = bytes(msg.data)[:-4]
    with pytest.raises(ValueError, match="bytes"):
        rc.depth_from_image(msg)
    with pytest.raises(ValueError, match="depth image"):
        rc.depth_from_image(rc.numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8", header()))
    with pytest.raises(ValueError):
        rc.numpy_to_image(np.zeros((2, 2), np.float64), "32FC1", header())


def test_camera_info_round_trip():
    intr = geometry.Intrinsics.from_hfov(640, 480, 90.0)
    msg = rc.intrinsics_to_camera_info(intr, header())
    assert msg.k[0] == pytest.approx(320.0) and msg.k[2] == pytest.approx(320.0)
    assert rc.camera_info_to_intrinsics(msg) == intr
    msg.k = [0.0] * 9
    with pytest.raises(ValueError, match="camera_info focal lengths"):
        rc.camera_info_to_intrinsics(msg)


def test_foa_round_trip_through_other_order_and_normalisation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 160)).astype(np.float32)
    for order, norm in (("ACN", "SN3D"), ("FUMA", "N3D")):
        msg = rc.foa_to_msg(x, 16000, header(), order, norm)
        assert (msg.channel_order, msg.normalization, msg.channels, msg.frame_samples) == (order, norm, 4, 160)
        back, rate = rc.foa_from_msg(msg)
        assert rate == 16000
        np.testing.assert_allclose(back, x, atol=1e-5)
    # FuMa/N3D on the wire: channel 1 is X scaled by sqrt(3)
    msg = rc.foa_to_msg(x, 16000, header(), "FUMA", "N3D")
    wire = np.asarray(msg.data).reshape(4, 160)
    np.testing.assert_allclose(wire[1], x[3] * np.sqrt(3), rtol=1e-5)


def test_a_plane_wave_from_the_left_decodes_to_the_left():
    gains = foa.encode_gains(np.array([-1.0, 0.0, 0.0]))  # camera -x = left
    sig = gains[:, None] * np.sin(np.linspace(0, 60, 1600))[None]
    back, _ = rc.foa_from_msg(rc.foa_to_msg(sig, 16000, header(), "FUMA", "SN3D"))
    az, el = foa.direction_from_foa(back)
    assert az == pytest.approx(90.0, abs=1.0) and el == pytest.approx(0.0, abs=1.0)


@pytest.mark.parametrize("mutate,match", [(lambda m: setattr(m, "channels", 3), "channels"),
                                          (lambda m: setattr(m, "sample_rate", 0), "rate"),
                                          (lambda m: setattr(m, "frame_samples", 99), "samples"),
                                          (lambda m: m.data.__setitem__(5, float("nan")), "NaN")])
def test_malformed_foa_raises(mutate, match):
    msg = rc.foa_to_msg(np.ones((4, 100), np.float32), 16000, header())
    mutate(msg)
    with pytest.raises(ValueError, match=match):
        rc.foa_from_msg(msg)


def test_boxes_go_to_the_optical_frame_and_back():
    box = geometry.Box3D(np.array([0.5, -0.4, -2.0]), np.array([0.3, 0.7, 0.35]), score=0.8)
    msg = rc.box_to_msg(box, 2)
    # optical: x right, y DOWN, z FORWARD
    assert (msg.center.position.x, msg.center.position.y, msg.center.position.z) == pytest.approx((0.5, 0.4, 2.0))
    assert (msg.size.x, msg.size.y, msg.size.z) == pytest.approx((0.3, 0.7, 0.35))
    assert msg.id == 2 and msg.center.orientation.w == 1.0
    arr = rc.boxes_to_msg([box, box], header())
    back = rc.boxes_from_msg(arr)
    assert [b.id for b in arr.boxes] == [0, 1]
    np.testing.assert_allclose(back[1].center, box.center)
    np.testing.assert_allclose(back[1].size, box.size)


def test_box_category_travels_in_the_message():
    """A person, the simulator's "speaker" (a loudspeaker), a blob the pipeline left unclassified."""
    person = geometry.Box3D(np.zeros(3), np.ones(3), label="person", score=0.7)
    speaker = geometry.Box3D(np.zeros(3), np.ones(3))
    blob = geometry.Box3D(np.zeros(3), np.ones(3), extra={"category": "unknown"})
    msgs = [rc.box_to_msg(b, i) for i, b in enumerate((person, speaker, blob))]
    assert [m.category for m in msgs] == ["person", "loudspeaker", "unknown"]
    assert msgs[0].score == pytest.approx(0.7)
    assert [geometry.box_category(rc.box_from_msg(m)) for m in msgs] == ["person", "loudspeaker", "unknown"]


def test_doa_message_keeps_reference_angles_and_optical_direction():
    d = geometry.direction_from_azel(30.0, -20.0)
    msg = rc.doa_to_msg(d * 3.0, 0.9, header(), "female")
    assert msg.azimuth_deg == pytest.approx(30.0) and msg.elevation_deg == pytest.approx(-20.0)
    # left (+az) -> optical -x; down (-el) -> optical +y; ahead -> optical +z
    assert msg.direction.x < 0 and msg.direction.y > 0 and msg.direction.z > 0
    np.testing.assert_allclose(rc.doa_direction_camera(msg), d, atol=1e-12)


def test_quaternions_and_transforms_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(20):
        r = geometry.rotation_y(rng.uniform(-180, 180)) @ geometry.rotation_x(rng.uniform(-90, 90))
        q = rc.quaternion_from_matrix(r)
        assert np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(rc.matrix_from_quaternion(q), r, atol=1e-9)
    # the standard camera_link -> optical rotation (REP-103 body -> optical)
    link_from_optical = geometry.BODY_FROM_CAMERA @ geometry.OPTICAL_FROM_CAMERA.T
    np.testing.assert_allclose(rc.quaternion_from_matrix(link_from_optical), [-0.5, 0.5, -0.5, 0.5], atol=1e-12)
    t = geometry.pose_matrix(geometry.rotation_y(40.0), [1.0, 2.0, 3.0])
    msg = rc.transform_to_msg(t, "map", "base_link", 5.5)
    assert msg.header.frame_id == "map" and msg.child_frame_id == "base_link"
    np.testing.assert_allclose(rc.pose_from_msg(rc.pose_to_msg(t)), t, atol=1e-12)
