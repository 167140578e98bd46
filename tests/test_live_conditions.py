"""Sensing conditions in the live world: the realistic preset by default, ambient noise at the
drawn SNR in the stream, degraded depth; the clean preset leaves the world as it was."""
from __future__ import annotations

import numpy as np
import pytest

from sim_bridge.conditions import active_power
from sim_bridge.live import LiveConfig, LiveWorld, drawn_conditions


def _world(conditions: str, seed: int = 3) -> LiveWorld:
    world = LiveWorld(LiveConfig(seed=seed, conditions=conditions, width=160, height=120))
    world.start(0.0)
    return world


def test_realistic_is_the_default_and_unknown_presets_are_refused():
    assert LiveConfig().conditions == "realistic"
    with pytest.raises(ValueError, match="unknown conditions"):
        LiveConfig(conditions="noisy")


def test_realistic_stream_carries_ambient_noise_at_the_drawn_snr():
    world = _world("realistic")
    live = world.scene(0)
    cond = live.conditions
    assert cond.preset == "realistic" and cond.snr_db == drawn_conditions(world.config, 0).snr_db
    assert live.ambient is not None and live.ambient.shape == (4, world.scene_samples)
    # the measured SNR (speech against all added noise) is at most the drawn ambient SNR
    assert cond.measured["snr_total_db"] <= cond.snr_db + 0.1
    assert cond.measured["snr_total_db"] > cond.snr_db - 10.0
    speech_w = cond.measured["speech_active_power_w"]
    ambient_snr = 10 * np.log10(speech_w / np.mean(live.ambient[0] ** 2))
    assert abs(ambient_snr - cond.measured["snr_total_db"]) < 0.5
    # before any loudspeaker starts, the stream is the ambient buffer (+ 1e-4 sensor noise)
    quiet = min(v.wait for v in live.voices) // world.chunk
    assert quiet >= 1, "this seed's voices start at once; pick another"
    for i in range(quiet):
        _, chunk = world.next_chunk()
        np.testing.assert_allclose(chunk, live.ambient[:, i * world.chunk:(i + 1) * world.chunk], atol=1e-3)
        assert active_power(chunk[0]) > 1e-8


def test_clean_world_has_no_ambient_and_realistic_degrades_depth():
    clean, real = _world("clean").scene(0), _world("realistic").scene(0)
    assert clean.ambient is None and clean.conditions.preset == "clean"
    assert real.conditions.depth_noise_k is not None
    valid = clean.depth > 0
    assert np.mean(real.depth[valid] == 0) > 0.005  # holes where the clean render has depth
    assert np.any(np.abs(real.depth[valid & (real.depth > 0)] - clean.depth[valid & (real.depth > 0)]) > 0)


def test_live_demo_names_each_scenes_snr_and_refuses_an_unknown_preset(capsys):
    from jaeger_ros.ros.live_demo import conditions_line, main

    line, snr = conditions_line("realistic", 3, 0)
    drawn = drawn_conditions(LiveConfig(seed=3, conditions="realistic"), 0)
    assert snr == pytest.approx(drawn.snr_db) and f"SNR {drawn.snr_db:.1f} dB" in line and drawn.noise_kind in line
    assert conditions_line("clean", 3, 0) == ("scene 0: clean (no added noise)", None)
    assert conditions_line("diffuse@10", 0, 4)[1] == pytest.approx(10.0)
    with pytest.raises(SystemExit) as exited:
        main(["--conditions", "noisy", "--duration", "1"])
    assert exited.value.code != 0 and "unknown conditions" in capsys.readouterr().err


def test_ground_truth_states_each_talkers_direct_to_reverberant_ratio():
    """Each source's DRR, computed here from its own impulse response by the definition (W energy
    from 1 ms before to 2.5 ms after the arrival its distance gives, over the rest), reaches the
    ground truth and its message."""
    world = _world("clean")
    live, gt = world.scene(0), world.ground_truth(0.5)
    receiver = np.asarray(live.scene.world_from_camera(), dtype=float)[:3, 3]
    assert len(gt.drr_db) == len(gt.sources) == len(live.voices)
    for v, drr in zip(live.voices, gt.drr_db):
        h = np.fft.irfft(v.rir_fft[0], (v.rir_fft.shape[1] - 1) * 2)[:v.rir_len]
        arrival = int(round(np.linalg.norm(live.scene.loudspeakers[v.loudspeaker].acoustic_center - receiver)
                            / 343.0 * world.sample_rate))
        sr = world.sample_rate
        direct = np.sum(h[arrival - round(0.001 * sr):arrival + round(0.0025 * sr)] ** 2)  # 1 ms before, 2.5 after
        assert drr == pytest.approx(10 * np.log10(direct / (np.sum(h ** 2) - direct)), abs=1e-3)
    from sim_bridge.node import ground_truth_to_msg

    msg = ground_truth_to_msg(gt, "camera_color_optical_frame")
    assert [s.drr_db for s in msg.sources] == pytest.approx(gt.drr_db, abs=1e-4)
