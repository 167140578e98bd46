"""`--protocol official` inputs (issue 25): Whisper-length log-mel checked against Whisper's own
feature extractor and its documented mask rule, the authors' camera from its fields of view,
the BILINEAR-then-BICUBIC RGB chain, the training prompt's newlines, random init of the fused
layers, STARSS23 answers to one decimal. Expected values come from the formulas, not from the
functions under test."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from jaeger_ros.model.config import JaegerConfig
from jaeger_ros.model.data import log_mel, official_intrinsics
from jaeger_ros.model.depth_pe import patchify
from jaeger_ros.model.predictor import JaegerPredictor


def _whisper_mask_frames(n: int) -> int:
    """Whisper's extractor: the input padded or cut to 30 s (480000 samples), its sample mask
    taken every hop (160) samples; the frames it marks as real."""
    mask = np.zeros(480000, dtype=int)
    mask[:min(n, 480000)] = 1
    return int(mask[::160].sum())


@pytest.mark.parametrize("n", [16000, 16001, 16159, 16160, 13 * 16000 + 37, 31 * 16000 + 5])
def test_official_log_mel_has_whispers_frame_count_and_values(n):
    from transformers import WhisperFeatureExtractor

    wave = np.random.default_rng(n).uniform(-0.3, 0.3, n).astype(np.float32)
    want = _whisper_mask_frames(n)
    assert want == min(math.ceil(n / 160), 3000)
    ours = log_mel(wave, whisper_length=True).numpy()
    assert ours.shape == (128, want)
    ref = WhisperFeatureExtractor(feature_size=128)(wave, sampling_rate=16000, return_attention_mask=True,
                                                     return_tensors="np")
    assert int(ref["attention_mask"].sum()) == want
    np.testing.assert_allclose(ours, ref["input_features"][0][:, :want], atol=1e-5)
    assert log_mel(wave).shape[1] == n // 160  # the trained protocol keeps floor(N / 160)


def test_official_camera_takes_fy_from_the_58_72_degree_vertical_field_of_view():
    cam = official_intrinsics(672, 378)
    assert cam.fx == pytest.approx(336 / math.tan(math.radians(45.0)), abs=1e-9)
    assert cam.fy == pytest.approx(189 / math.tan(math.radians(29.36)), abs=1e-9)
    assert abs(cam.fy - 335.96917) < 1e-4 and abs(cam.fy - cam.fx) > 0.03  # not square pixels
    assert cam.vfov_deg == pytest.approx(58.72, abs=1e-9)  # 58.7155 (square pixels) would fail
    assert (cam.cx, cam.cy) == (336.0, 189.0)


@pytest.fixture(scope="module")
def predictor():
    return JaegerPredictor.from_pretrained("default", protocol="official")


def test_official_rgb_goes_bilinear_to_672x378_then_bicubic(predictor):
    b = predictor.model.builder
    img = np.random.default_rng(3).integers(0, 256, (540, 960, 3), dtype=np.uint8)
    w, h = b.config.image_size
    chain = np.asarray(Image.fromarray(img).resize((672, 378), Image.BILINEAR).resize((w, h), Image.BICUBIC))
    single = np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))
    depth = np.full((540, 960), 2.0, np.float32)
    cam = official_intrinsics(960, 540)
    got, _, _ = b.vision(img, depth, cam, resize_chain=True)
    want, _ = patchify(chain, b.patch_size, b.merge, b.tps)
    assert torch.equal(got, want)
    ours, _, _ = b.vision(img, depth, cam)
    assert torch.equal(ours, patchify(single, b.patch_size, b.merge, b.tps)[0]) and not torch.equal(ours, got)


def test_training_prompt_newlines_follow_the_config(predictor):
    b = predictor.model.builder
    joined = b.prompt("D", "Q?")
    assert "<|vision_eos|><|audio_bos|>" in joined and "<|audio_eos|>Q?" in joined  # the shipped checkpoint's
    b.config = b.config.replace(modality_newline=True)
    try:
        newline = b.prompt("D", "Q?")
        assert "<|vision_eos|>\n<|audio_bos|>" in newline and "<|audio_eos|>\nQ?" in newline
        official = b.prompt("D", "Q?", 10, system="S")  # Qwen's chat template: no newlines between blocks
        assert "<|vision_eos|><|audio_bos|>" in official and "<|audio_eos|>Q?" in official
    finally:
        b.config = b.config.replace(modality_newline=False)


def test_fused_layers_can_start_random_as_the_authors():
    from jaeger_ros.model.modeling import JaegerModel, Towers
    from jaeger_ros.model.predictor import DEFAULT_CHECKPOINT

    base = JaegerConfig.load(DEFAULT_CHECKPOINT / "jaeger_config.json")
    towers = {}
    for init in ("pretrained", "random"):
        model = JaegerModel.build_tiny(base.replace(fused_init=init), seed=0)
        towers[init] = Towers(model.base_thinker).audio
    d_model = base.thinker["audio"]["d_model"]
    ours, theirs = towers["pretrained"], towers["random"]
    assert torch.count_nonzero(ours.proj.weight[:, d_model:]) == 0
    w = theirs.proj.weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002
    assert torch.count_nonzero(w[:, d_model:]) == w[:, d_model:].numel()
    assert torch.all(theirs.proj.bias == 0)
    assert torch.all(theirs.ln_post.norm.weight == 1) and torch.all(theirs.ln_post.norm.bias == 0)
    with pytest.raises(ValueError, match="fused_init"):
        base.replace(fused_init="zeros")


def test_starss23_under_the_official_protocol_asks_a_voice_and_answers_one_decimal(predictor):
    pred = predictor.parse("starss23", "azimuth: -13.94; elevation: 2", 0.9)
    assert pred.valid and pred.official_text() == "azimuth: -13.9; elevation: 2.0"
    assert predictor.parse("A", "azimuth: -13.94; elevation: 2", 0.9).official_text() == "azimuth: -14; elevation: 2"
    foa = np.random.default_rng(0).normal(scale=0.1, size=(4, 8000)).astype(np.float32)
    with pytest.raises(ValueError, match="one voice"):
        predictor.predict(None, None, None, foa, 16000, "starss23")


def _adaptive_mean(a: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """PyTorch's documented adaptive average pooling windows: [floor(i*H/oh), ceil((i+1)*H/oh))."""
    h, w = a.shape[:2]
    out = np.zeros((oh, ow) + a.shape[2:])
    for i in range(oh):
        for j in range(ow):
            r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
            c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[i, j] = a[r0:r1, c0:c1].mean(axis=(0, 1))
    return out


def test_release_depth_pe_uses_the_authors_vertical_field_of_view():
    """The release's depth PE from the published recipe, written here in float64: 8-bit depth
    -> metres, the point cloud of the authors' camera (hfov 90, vfov 58.72), bf16 as their
    inference feeds it, adaptive mean to the 28x48 grid, centred, millimetres rounded,
    sin/cos interleaved at T 1e4 with 426 channels per axis, zero-padded to 1280."""
    from jaeger_ros.model.depth_pe import release_depth_pe

    rng = np.random.default_rng(7)
    depth = (rng.integers(40, 255, (378, 672)).astype(np.float64) / 255 * 10.0).astype(np.float32)
    fx, fy = 336 / math.tan(math.radians(45)), 189 / math.tan(math.radians(58.72 / 2))
    u, v = np.meshgrid(np.arange(672), np.arange(378))
    d = depth.astype(np.float64)
    cloud = np.stack([(u - 336) * d / fx, -(v - 189) * d / fy, -d], axis=-1)
    cloud = torch.from_numpy(cloud).to(torch.bfloat16).double().numpy()
    pooled = _adaptive_mean(cloud, 28, 48).reshape(-1, 3)
    mm = (pooled - pooled.mean(axis=0)) / 0.001
    n = 426
    dim_t = 1e4 ** (2 * (np.arange(n) // 2) / n)
    want = np.zeros((28 * 48, 1280))
    for axis in range(3):
        ang = np.round(mm[:, axis])[:, None] / dim_t
        want[:, axis * n:(axis + 1) * n] = np.where(np.arange(n) % 2 == 0, np.sin(ang), np.cos(ang))
    got = release_depth_pe(depth, official_intrinsics(672, 378), (28, 48), 1280).double().numpy()
    # cells whose millimetres sit on a rounding edge may round either way in float32: left out
    clear = np.all(np.abs(mm - np.floor(mm) - 0.5) > 0.02, axis=1)
    assert clear.sum() > 1100
    np.testing.assert_allclose(got[clear], want[clear], atol=2e-3)
    assert np.all(got[:, 3 * n:] == 0)
    square = release_depth_pe(depth, official_intrinsics(672, 378).__class__(672, 378, 336.0, 336.0, 336.0, 189.0),
                              (28, 48), 1280).double().numpy()
    changed = np.abs(square - got).max(axis=1) > 1e-3
    assert 0 < changed.sum() < 28 * 48  # fy 335.97 vs 336 moves some cells' y by a millimetre
    assert np.allclose(square[:, :n], got[:, :n], atol=2e-3)  # x and z do not depend on fy
    assert np.allclose(square[:, 2 * n:3 * n], got[:, 2 * n:3 * n], atol=2e-3)
