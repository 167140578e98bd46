"""Acoustic simulator: image-source FOA RIRs + diffuse tail, checked against geometry and theory."""
from __future__ import annotations

import numpy as np
import pytest

from jaeger_ros.core import foa
from jaeger_ros.core.geometry import azel_from_direction, great_circle_deg, rotation_x, rotation_y
from sim_bridge import acoustics as ac
from sim_bridge.room import Room

FS = 16000
BIG_ANECHOIC = Room((9.0, 7.0, 9.0), (0.99,) * 6)
RECEIVER = np.array([4.3, 3.4, 4.6])
ROTATION = rotation_y(35.0) @ rotation_x(-12.0)  # receiver yawed left and pitched down


def true_azel(source: np.ndarray, receiver: np.ndarray, world_from_receiver: np.ndarray) -> tuple[float, float]:
    az, el = azel_from_direction(world_from_receiver.T @ (source - receiver))
    return float(az), float(el)


def around_the_sphere(n: int = 40, seed: int = 0) -> np.ndarray:
    """n world source positions 1-3 m from RECEIVER in directions spread over the whole sphere."""
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return RECEIVER + dirs * rng.uniform(1.0, 3.0, (n, 1))


def direct_delay_samples(source: np.ndarray, receiver: np.ndarray) -> float:
    return float(np.linalg.norm(source - receiver) / ac.SPEED_OF_SOUND * FS)


@pytest.mark.parametrize("source", around_the_sphere(), ids=lambda s: "src" + "_".join(f"{v:.1f}" for v in s))
def test_anechoic_direct_arrival_direction_within_one_degree(source: np.ndarray) -> None:
    rir = ac.foa_rir(BIG_ANECHOIC, source, RECEIVER, ROTATION, FS, max_order=0, tail=False)
    az, el = foa.direction_from_foa(rir, FS)
    assert great_circle_deg(az, el, *true_azel(source, RECEIVER, ROTATION)) < 1.0


@pytest.mark.parametrize("source", around_the_sphere(12, seed=1), ids=lambda s: "src" + "_".join(f"{v:.1f}" for v in s))
def test_direct_arrival_direction_in_a_full_rir(source: np.ndarray) -> None:
    """With reflections and tail present, the samples before the first reflection still point
    at the source (within 1 degree)."""
    rir = ac.foa_rir(BIG_ANECHOIC, source, RECEIVER, ROTATION, FS, rng=np.random.default_rng(0))
    first = ac.image_sources(BIG_ANECHOIC, source, 1)
    first_reflection = np.min(np.linalg.norm(first.positions[first.orders == 1] - RECEIVER, axis=1))
    end = int(first_reflection / ac.SPEED_OF_SOUND * FS) - ac.SINC_TAPS // 2
    assert end > direct_delay_samples(source, RECEIVER) + ac.SINC_TAPS // 2
    az, el = foa.direction_from_foa(rir[:, :end], FS)
    assert great_circle_deg(az, el, *true_azel(source, RECEIVER, ROTATION)) < 1.0


def test_direct_path_delay_and_spreading_loss() -> None:
    for source in around_the_sphere(8, seed=2):
        rir = ac.foa_rir(BIG_ANECHOIC, source, RECEIVER, ROTATION, FS, max_order=0, tail=False)
        w = rir[0].astype(float)
        delay = direct_delay_samples(source, RECEIVER)
        assert abs(np.argmax(np.abs(w)) - delay) <= 0.6
        assert np.all(w[: int(delay) - ac.SINC_TAPS // 2] == 0)  # nothing arrives before sound could
        distance = np.linalg.norm(source - RECEIVER)
        np.testing.assert_allclose(np.sqrt(np.sum(w ** 2)), 1.0 / distance, rtol=0.05)  # 1/r amplitude


def test_first_order_reflections_come_from_their_mirror_images_with_surface_gains() -> None:
    room = Room((7.0, 3.2, 5.5), (0.1, 0.3, 0.5, 0.2, 0.6, 0.4))
    source, receiver = np.array([2.8, 0.9, 4.3]), np.array([2.8, 1.0, 3.1])
    rot = rotation_y(-70.0)
    rir = ac.foa_rir(room, source, receiver, rot, FS, max_order=1, tail=False)
    images = ac.image_sources(room, source, 1)
    dist = np.linalg.norm(images.positions - receiver, axis=1)
    delays = dist / ac.SPEED_OF_SOUND * FS
    order = np.argsort(delays)
    assert images.orders[order[0]] == 0  # the direct sound arrives first
    assert np.all(np.diff(delays[order]) > ac.SINC_TAPS)  # this geometry keeps arrivals apart
    # Reflection coefficients sqrt(1 - alpha) of the one surface each image crossed.
    np.testing.assert_allclose(np.sort(images.gains[images.orders == 1]),
                               np.sort(np.sqrt(1 - np.asarray(room.absorption))))
    for k in order:
        lo, hi = int(delays[k]) - ac.SINC_TAPS // 2, int(delays[k]) + ac.SINC_TAPS // 2 + 1
        window = rir[:, lo:hi]
        az, el = foa.direction_from_foa(window, FS)
        assert great_circle_deg(az, el, *true_azel(images.positions[k], receiver, rot)) < 2.0
        np.testing.assert_allclose(np.sqrt(np.sum(window[0].astype(float) ** 2)), images.gains[k] / dist[k],
                                   rtol=0.08)
    # Nothing but those seven arrivals.
    assert np.max(np.abs(rir[0, int(delays.max()) + 40:])) < 0.01 * np.max(np.abs(rir[0]))


@pytest.mark.parametrize("absorption", [(0.1, 0.12, 0.14, 0.09, 0.12, 0.11),
                                        (0.2, 0.25, 0.15, 0.3, 0.2, 0.2),
                                        (0.35, 0.3, 0.4, 0.3, 0.45, 0.35)])
def test_rt60_matches_sabine(absorption: tuple) -> None:
    room = Room((5.0, 2.7, 4.0), absorption)
    rir = ac.foa_rir(room, np.array([3.6, 1.1, 1.0]), np.array([1.2, 1.5, 2.7]), rotation_y(20.0), FS,
                     rng=np.random.default_rng(5))
    sabine = room.sabine_rt60()
    assert 0.2 < sabine < 0.95
    assert abs(ac.estimate_rt60(rir[0], FS) / sabine - 1.0) < 0.15
    assert sabine <= rir.shape[1] / FS <= sabine + 0.05  # length follows the RT60


def test_late_tail_is_diffuse_with_sn3d_energy_ratio() -> None:
    room = Room((5.0, 2.7, 4.0), (0.15,) * 6)
    rir = ac.foa_rir(room, np.array([3.6, 1.1, 1.0]), np.array([1.2, 1.5, 2.7]), np.eye(3), FS,
                     rng=np.random.default_rng(1)).astype(float)
    late = rir[:, int(0.15 * FS):]
    ratio = np.sum(late[1:] ** 2) / np.sum(late[0] ** 2)
    assert abs(ratio - 1.0) < 0.1  # isotropic field in SN3D: X^2 + Y^2 + Z^2 = W^2 on average
    field = foa.intensity_vectors(late.astype(np.float32))
    net = np.linalg.norm(field.intensity.sum(axis=(1, 2))) / np.sum(np.abs(field.intensity).sum(axis=0))
    assert net < 0.1  # no net energy flow (a plane wave gives 1)


def test_tail_continues_the_image_source_decay() -> None:
    """No step at the hand-over from image sources to the statistical tail: the energy in 20 ms
    bins decays smoothly (each bin within 4 dB of the straight-line fit around the hand-over)."""
    room = Room((5.0, 2.7, 4.0), (0.2,) * 6)
    rir = ac.foa_rir(room, np.array([3.5, 1.0, 1.2]), np.array([1.5, 1.5, 2.5]), np.eye(3), FS,
                     rng=np.random.default_rng(2), max_order=10)
    bins = rir[0, : int(0.2 * FS)].astype(float).reshape(10, -1)
    level = 10 * np.log10(np.sum(bins ** 2, axis=1))[2:]  # from 40 ms, after the early peaks
    t = np.arange(level.size)
    residual = level - np.polyval(np.polyfit(t, level, 1), t)
    assert np.max(np.abs(residual)) < 4.0


def test_determinism_and_rng_dependence() -> None:
    room = Room((5.0, 2.7, 4.0), (0.2,) * 6)
    args = (room, np.array([3.5, 1.0, 1.2]), np.array([1.5, 1.5, 2.5]), rotation_y(10.0), FS)
    a = ac.foa_rir(*args, rng=np.random.default_rng(7))
    b = ac.foa_rir(*args, rng=np.random.default_rng(7))
    c = ac.foa_rir(*args, rng=np.random.default_rng(8))
    assert a.dtype == np.float32 and a.shape[0] == 4
    np.testing.assert_array_equal(a, b)
    early = int(0.04 * FS)  # image sources only: independent of the rng
    np.testing.assert_array_equal(a[:, :early], c[:, :early])
    assert not np.allclose(a[:, early:], c[:, early:])


def test_image_sources_count_and_direct_first() -> None:
    room = Room((5.0, 2.7, 4.0), (0.2,) * 6)
    source, receiver = np.array([3.5, 1.0, 1.2]), np.array([1.5, 1.5, 2.5])
    for order in (0, 1, 2, 5):
        images = ac.image_sources(room, source, order)
        # number of integer points with |a|+|b|+|c| <= order (the octahedral numbers)
        assert len(images.orders) == (2 * order + 1) * (2 * order ** 2 + 2 * order + 3) // 3
        dist = np.linalg.norm(images.positions - receiver, axis=1)
        assert np.argmin(dist) == np.flatnonzero(images.orders == 0)[0]
        np.testing.assert_allclose(images.positions[images.orders == 0][0], source)


def test_bad_inputs_raise() -> None:
    room = Room((5.0, 2.7, 4.0), (0.2,) * 6)
    inside = np.array([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="outside the room"):
        ac.foa_rir(room, np.array([6.0, 1.0, 1.0]), inside, np.eye(3))
    with pytest.raises(ValueError, match="outside the room"):
        ac.foa_rir(room, inside, np.array([1.0, -0.1, 1.0]), np.eye(3))
    with pytest.raises(ValueError, match="rotation"):
        ac.foa_rir(room, inside, np.array([2.0, 1.0, 1.0]), np.eye(3) * 2)
    with pytest.raises(ValueError, match="rotation"):
        ac.foa_rir(room, inside, np.array([2.0, 1.0, 1.0]), np.diag([1.0, 1.0, -1.0]))  # a mirror
    with pytest.raises(ValueError, match="coincide"):
        ac.foa_rir(room, inside, inside, np.eye(3))
    with pytest.raises(ValueError, match="decay"):
        ac.estimate_rt60(np.ones(100))


def test_convolve_and_mix_follow_the_reference() -> None:
    rng = np.random.default_rng(4)
    rir_a, rir_b = rng.standard_normal((4, 300)), rng.standard_normal((4, 120))
    dry_a, dry_b = rng.standard_normal(1000), rng.standard_normal(1500)
    wet_a, wet_b = ac.convolve_foa(dry_a, rir_a), ac.convolve_foa(dry_b, rir_b)
    assert wet_a.shape == (4, 1299) and wet_a.dtype == np.float32
    np.testing.assert_allclose(wet_a[2], np.convolve(dry_a, rir_a[2]), atol=1e-4)
    mix = ac.mix_sources([wet_a, wet_b])
    assert mix.shape == (4, 1619)
    np.testing.assert_allclose(mix[:, :1299], wet_a + wet_b[:, :1299], atol=1e-6)
    np.testing.assert_array_equal(mix[:, 1299:], wet_b[:, 1299:])
    with pytest.raises(ValueError, match=r"\(4, M\)"):
        ac.convolve_foa(dry_a, rir_a[:3])
    with pytest.raises(ValueError, match="at least one"):
        ac.mix_sources([])


def test_direct_to_reverberant_ratio_of_a_known_response():
    """A direct arrival smeared over three samples (energy 0.25 + 1 + 0.25 = 1.5) and a decaying
    tail from 5 ms on scaled to energy 15: DRR = 10 log10(1.5 / 15) = -10 dB."""
    h = np.zeros(8000)
    h[199:202] = [0.5, 1.0, 0.5]
    tail = np.random.default_rng(0).standard_normal(4000) * np.exp(-np.arange(4000) / 1500.0)
    h[280:4280] = tail * np.sqrt(15.0 / np.sum(tail ** 2))
    assert ac.direct_to_reverberant_db(h, FS) == pytest.approx(-10.0, abs=0.05)
    # a reflection 10x the direct sound (a talker facing away): the geometry names the arrival
    h[1000] = np.sqrt(10.0 * 1.5)   # energy 15 at 1000; the rest: 15 + 15 -> 10 log10(1.5 / 30)
    assert ac.direct_to_reverberant_db(h, FS, first_arrival_s=200 / FS) == pytest.approx(-13.01, abs=0.05)
    with pytest.raises(ValueError, match="silent"):
        ac.direct_to_reverberant_db(np.zeros(100), FS)
    with pytest.raises(ValueError, match="not finite"):
        ac.direct_to_reverberant_db(np.full(100, np.nan), FS)


def test_direct_to_reverberant_ratio_falls_with_distance_as_the_inverse_square_law():
    """In one reverberant room the reverberant energy hardly depends on where the source is, the
    direct energy falls as 1/r^2: from 1 m to 3 m the DRR drops by about 20 log10(3) = 9.5 dB."""
    room = Room((6.0, 3.0, 5.0), (0.25,) * 6)
    receiver = np.array([3.0, 1.5, 1.0])
    drr = [ac.direct_to_reverberant_db(ac.foa_rir(room, receiver + np.array([0.0, 0.0, r]), receiver, np.eye(3),
                                                  FS, np.random.default_rng(1))[0], FS) for r in (1.0, 3.0)]
    assert 6.0 < drr[0] - drr[1] < 13.0
