"""FOA core: conventions, conversion, intensity-vector directions, Classical IV, wav I/O."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from jaeger_ros.core import foa
from jaeger_ros.core.geometry import azel_from_direction, direction_from_azel, great_circle_deg


def sphere_directions() -> np.ndarray:
    """26 camera-frame unit vectors: the faces, edges and corners of a cube (all around the sphere)."""
    grid = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                     if (i, j, k) != (0, 0, 0)], dtype=float)
    return grid / np.linalg.norm(grid, axis=1, keepdims=True)


def plane_wave(direction_cam: np.ndarray, n: int = 8000, seed: int = 0, **kw: str) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(n)
    return foa.encode_gains(direction_cam, **kw)[:, None] * noise[None]


def test_encode_gains_follow_the_camera_axes() -> None:
    forward, left, up = np.array([0, 0, -1.0]), np.array([-1.0, 0, 0]), np.array([0, 1.0, 0])
    # ACN = W, Y(left), Z(up), X(forward)
    np.testing.assert_allclose(foa.encode_gains(forward), [1, 0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(foa.encode_gains(left), [1, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(foa.encode_gains(up * 5.0), [1, 0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(foa.encode_gains(forward, "FUMA"), [1, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(foa.encode_gains(left, "ACN", "N3D"), [1, np.sqrt(3), 0, 0], atol=1e-12)
    gains = foa.encode_gains(sphere_directions())
    assert gains.shape == (26, 4)
    np.testing.assert_allclose(np.linalg.norm(gains[:, 1:], axis=1), 1.0)


def test_ambisonic_camera_round_trip() -> None:
    v = np.random.default_rng(1).standard_normal((10, 3))
    np.testing.assert_allclose(foa.ambisonic_to_camera(foa.camera_to_ambisonic(v)), v)
    np.testing.assert_allclose(foa.ambisonic_to_camera([1.0, 0, 0]), [0, 0, -1.0])  # X = forward


@pytest.mark.parametrize("order", ["ACN", "FUMA"])
@pytest.mark.parametrize("norm", ["SN3D", "N3D"])
def test_convert_matches_direct_encoding_and_round_trips(order: str, norm: str) -> None:
    d = direction_from_azel(35.0, -20.0)
    ambix = plane_wave(d, 64)
    other = foa.convert(ambix, "ACN", "SN3D", order, norm)
    np.testing.assert_allclose(other, plane_wave(d, 64, order=order, normalization=norm), atol=1e-12)
    np.testing.assert_allclose(foa.convert(other, order, norm), ambix, atol=1e-12)


def test_convert_keeps_float32() -> None:
    x = np.ones((4, 8), dtype=np.float32)
    assert foa.convert(x, "FUMA", "N3D").dtype == np.float32


@pytest.mark.parametrize("bad", [dict(src_order="XYZW"), dict(src_normalization="maxN"),
                                 dict(dst_order="B-format")])
def test_convert_rejects_unknown_names(bad: dict) -> None:
    args = dict(src_order="ACN", src_normalization="SN3D", dst_order="ACN", dst_normalization="SN3D") | bad
    with pytest.raises(ValueError, match="unknown FOA"):
        foa.convert(np.zeros((4, 4)), **args)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\(4, N\)"):
        foa.convert(np.zeros((3, 4)), "ACN", "SN3D")
    with pytest.raises(ValueError, match=r"\(4, N\)"):
        foa.intensity_vectors(np.zeros(100))
    with pytest.raises(ValueError, match="non-zero"):
        foa.encode_gains(np.zeros(3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        foa.encode_gains(np.ones(2))


def test_stft_frame_rate_and_window() -> None:
    x = np.random.default_rng(0).standard_normal((2, 16000))
    spec = foa.stft(x)
    assert spec.shape == (2, 401, 51)  # 50 frames per second, centred frames
    tone = np.cos(2 * np.pi * 1000.0 * np.arange(16000) / 16000)
    peak_bin = np.argmax(np.abs(foa.stft(tone[None])[0, :, 25]))
    assert peak_bin == 50  # 1000 Hz / (16000 / 800) Hz per bin


@pytest.mark.parametrize("index", range(26))
def test_intensity_recovers_plane_wave_direction(index: int) -> None:
    d = sphere_directions()[index]
    field = foa.intensity_vectors(plane_wave(d))
    assert field.intensity.shape == (3, 401, 26) and field.energy.shape == (401, 26)
    est = foa.ambisonic_to_camera(field.intensity.sum(axis=(1, 2)))
    az, el = azel_from_direction(est)
    true_az, true_el = azel_from_direction(d)
    assert great_circle_deg(az, el, true_az, true_el) < 1.0
    assert great_circle_deg(*foa.direction_from_foa(plane_wave(d)), true_az, true_el) < 1.0


def test_intensity_of_diffuse_noise_has_no_direction() -> None:
    rng = np.random.default_rng(3)
    diffuse = rng.standard_normal((4, 16000)) * np.array([1.0, 3 ** -0.5, 3 ** -0.5, 3 ** -0.5])[:, None]
    field = foa.intensity_vectors(diffuse)
    mean = np.linalg.norm(field.intensity.mean(axis=(1, 2))) / field.energy.mean()
    plane = foa.intensity_vectors(plane_wave(np.array([0, 0, -1.0]), 16000))
    assert mean < 0.05 * np.linalg.norm(plane.intensity.mean(axis=(1, 2))) / plane.energy.mean()


def test_classical_iv_features_shape_and_signs() -> None:
    front_left_up = direction_from_azel(45.0, 10.0)
    feats = foa.classical_iv_features(plane_wave(front_left_up, 16000))
    assert feats.shape == (51, 1203) and feats.dtype == np.float32
    ix, iy, iz = feats[:, :401], feats[:, 401:802], feats[:, 802:]
    assert np.all(ix[:, 5:] > 0) and np.all(iy[:, 5:] > 0) and np.all(iz[:, 5:] > 0)
    # I/E of one plane wave in SN3D is 3/4 of the unit direction (E = |W|^2 (1 + 1/3)).
    u = foa.camera_to_ambisonic(front_left_up)
    np.testing.assert_allclose(np.median(ix), 0.75 * u[0], rtol=1e-3)
    np.testing.assert_allclose(np.median(iy), 0.75 * u[1], rtol=1e-3)
    back_right = foa.classical_iv_features(plane_wave(direction_from_azel(-135.0, 0.0), 16000))
    assert np.all(back_right[:, 5:401] < 0) and np.all(back_right[:, 406:802] < 0)


def test_wav_round_trip_preserves_data_and_order(tmp_path) -> None:
    x = np.random.default_rng(2).standard_normal((4, 1000)).astype(np.float32) * 0.3
    x[2] *= 0.01  # channels distinguishable
    path = tmp_path / "foa.wav"
    foa.write_foa_wav(path, x, 16000)
    info = sf.info(str(path))
    assert info.channels == 4 and info.subtype == "FLOAT" and info.samplerate == 16000
    y, rate = foa.read_foa_wav(path)
    assert rate == 16000 and y.dtype == np.float32
    np.testing.assert_array_equal(y, x)


def test_wav_errors_name_the_file(tmp_path) -> None:
    missing = tmp_path / "nothing.wav"
    with pytest.raises(FileNotFoundError, match="nothing.wav"):
        foa.read_foa_wav(missing)
    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), np.zeros((100, 2), dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="stereo.wav.*4 FOA channels, found 2"):
        foa.read_foa_wav(stereo)
    with pytest.raises(ValueError, match=r"\(4, N\)"):
        foa.write_foa_wav(tmp_path / "x.wav", np.zeros((2, 10)))


@pytest.mark.parametrize("order", ["ACN", "FUMA"])
def test_measure_normalization_tells_sn3d_from_n3d(order: str) -> None:
    on_axis = np.array([0.0, 0.0, -1.0])  # straight ahead: |X| / |W| = 1 (SN3D) or sqrt(3) (N3D)
    impulse = np.zeros(200)
    impulse[50] = 1.0
    for d in (on_axis, direction_from_azel(-60.0, 30.0)):
        sn3d = foa.encode_gains(d, order)[:, None] * impulse[None]
        n3d = foa.encode_gains(d, order, "N3D")[:, None] * impulse[None]
        assert foa.measure_normalization(sn3d, d, order) == "SN3D"
        assert foa.measure_normalization(n3d, d, order) == "N3D"
    # An anechoic recording (noise) works too, in either normalisation.
    assert foa.measure_normalization(plane_wave(on_axis, 2000, normalization="N3D"), on_axis) == "N3D"


def test_measure_normalization_flags_a_wrong_channel_order() -> None:
    d = np.array([0.0, 0.0, -1.0])
    fuma = foa.encode_gains(d, "FUMA")[:, None] * np.hanning(64)[None]
    with pytest.raises(ValueError, match="channel order or source direction"):
        foa.measure_normalization(fuma, d, "ACN")  # X read as Y: no dipole signal forward
