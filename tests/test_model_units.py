"""JAEGER model parts: IV physics, depth PE, patch order, log-mel, tokenizer, end-to-end shapes,
save/load, malformed generations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jaeger_ros.core import foa as foa_io
from jaeger_ros.core.geometry import Intrinsics, direction_from_azel
from jaeger_ros.model.config import IV_DIM, JaegerConfig, TrainConfig
from jaeger_ros.model.data import audio_token_count, log_mel
from jaeger_ros.model.depth_pe import (depth_pe, patchify, pe_rows_for_patches, pooled_points, raster_to_processor_order,
                                       sine_pe_3d, tower_order, window_index)
from jaeger_ros.model.iv import NEURAL_IV_PARAMETERS, ClassicalIV, NeuralIV, release_iv_tokens, resample_to_tokens
from jaeger_ros.model.modeling import JaegerModel, answer_loss, describe
from jaeger_ros.model.predictor import JaegerPredictor
from jaeger_ros.model.tokenizer import special_ids, train_tokenizer


def small_config(**changes) -> JaegerConfig:
    cfg = TrainConfig().model_config("config")
    return cfg.replace(**{"max_audio_seconds": 0.5, "image_size": [112, 56], "max_new_tokens": 12, **changes})


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(512)


@pytest.fixture(scope="module")
def model(tokenizer):
    return JaegerModel.build_tiny(small_config(), tokenizer).eval()


def plane_wave(az: float, el: float, n: int = 8000, seed: int = 0) -> np.ndarray:
    sig = np.random.default_rng(seed).normal(size=n)
    return (foa_io.encode_gains(direction_from_azel(az, el))[:, None] * sig[None]).astype(np.float32)


# ------------------------------------------------------------------ IV physics

def test_classical_iv_torch_equals_numpy_reference():
    foa = plane_wave(30.0, 10.0, 4000) + 0.01 * np.random.default_rng(1).normal(size=(4, 4000)).astype(np.float32)
    ref = foa_io.classical_iv_features(foa)
    ours = ClassicalIV()(torch.from_numpy(foa)[None])[0].numpy()
    assert ours.shape == ref.shape == (1 + 4000 // 320, IV_DIM)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("az, el, signs", [(0.0, 0.0, (1, 0, 0)), (90.0, 0.0, (0, 1, 0)),
                                           (-90.0, 0.0, (0, -1, 0)), (180.0, 0.0, (-1, 0, 0)),
                                           (0.0, 60.0, (1, 0, 1))])
def test_classical_iv_sign_pattern_follows_source_direction(az, el, signs):
    """Plane wave from (az, el): the X/Y/Z intensity blocks (forward/left/up) carry the sign
    of the direction's ambisonic components; a zero component gives ~zero intensity."""
    feats = ClassicalIV()(torch.from_numpy(plane_wave(az, el))[None])[0]  # (T, 1203)
    blocks = feats.reshape(feats.shape[0], 3, 401)[:, :, 20:300].sum(dim=(0, 2))  # speech band
    scale = blocks.abs().max()
    for value, sign in zip(blocks, signs):
        if sign == 0:
            assert abs(value) < 1e-3 * scale
        else:
            assert np.sign(float(value)) == sign and abs(value) > 0.3 * scale


def test_neural_iv_shapes_rate_and_dipole_dependence():
    iv = NeuralIV().eval()
    foa = torch.from_numpy(np.stack([plane_wave(45.0, 0.0, 16000), plane_wave(-45.0, 0.0, 16000)]))
    with torch.no_grad():
        out = iv(foa)
    assert out.shape == (2, NeuralIV.num_frames(16000), IV_DIM)
    assert out.shape[1] == 51  # 50 frames/s, padded convs: 1 + 16000 // 320
    # Same W, mirrored Y: only the Y head's input changes, so only its block may differ.
    assert torch.allclose(out[0, :, :401], out[1, :, :401], atol=1e-5)
    assert not torch.allclose(out[0, :, 401:802], out[1, :, 401:802], atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        iv(torch.zeros(1, 3, 1000))


def test_resample_to_tokens_averages_frame_pairs():
    feats = torch.arange(8, dtype=torch.float32)[:, None].repeat(1, 3)
    out = resample_to_tokens(feats, 4)
    assert torch.equal(out[:, 0], torch.tensor([0.5, 2.5, 4.5, 6.5]))


def test_neural_iv_is_the_official_encoder_in_parameters_and_frames():
    """The authors' layer list: 7 padded, biased convs each followed by GroupNorm(1, 401), no
    activation, one shared Linear-ReLU-Linear head: 2,907,651 parameters, 651 frames at 13 s."""
    iv = NeuralIV()
    assert sum(p.numel() for p in iv.parameters()) == NEURAL_IV_PARAMETERS == 2_907_651
    kinds = [type(m).__name__ for m in iv.cnn]
    assert kinds == ["Conv1d", "GroupNorm"] * 7  # no activation between the convs
    convs = [m for m in iv.cnn if isinstance(m, torch.nn.Conv1d)]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == \
        [(10, 5, 5), (3, 2, 1), (3, 2, 1), (3, 2, 1), (3, 2, 1), (2, 2, 1), (2, 2, 1)]
    assert all(c.bias is not None for c in convs)
    assert NeuralIV.num_frames(13 * 16000) == 651
    x = torch.zeros(1, 4, 13 * 16000)
    x[0, 0, ::97] = 1.0
    with torch.no_grad():
        assert iv(x).shape == (1, 651, IV_DIM)
    # one head shared by the three products: equal dipole channels give equal blocks
    same = torch.randn(1, 1, 8000).expand(1, 3, 8000)
    with torch.no_grad():
        out = iv(torch.cat([torch.randn(1, 1, 8000), same], dim=1))[0].reshape(-1, 3, 401)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 0], out[:, 2], atol=1e-6)


def test_release_iv_timing_trims_interpolates_and_pools():
    """Frames beyond len // 320 are dropped, the rest stretched to the tower's 50 Hz length
    and averaged in pairs (the tower's AvgPool1d(2))."""
    feats = torch.arange(11, dtype=torch.float32)[:, None].repeat(1, 2)
    out = release_iv_tokens(feats, 10 * 320, 10)  # 11 frames, 10 kept, already 10 long
    assert torch.equal(out[:, 0], torch.tensor([0.5, 2.5, 4.5, 6.5, 8.5]))
    stretched = release_iv_tokens(torch.tensor([[0.0], [2.0]]), 2 * 320, 4)  # 2 frames -> 4 -> 2 tokens
    assert torch.allclose(stretched[:, 0], torch.tensor([0.25, 1.75]))


# ------------------------------------------------------------------ vision inputs

def test_window_index_matches_transformers():
    from transformers.vision_utils import get_vision_window_index

    grids = [(1, 12, 20), (1, 28, 48)]
    ours = window_index(grids, window_size=112, patch_size=14, merge=2)
    theirs, _ = get_vision_window_index(torch.tensor(grids), spatial_merge_size=2, window_size=112, patch_size=14)
    assert torch.equal(ours, theirs.to(ours.dtype))
    assert sorted(tower_order(grids, 112, 14, 2).tolist()) == list(range(12 * 20 + 28 * 48))


def test_patchify_puts_each_merge_block_together():
    img = np.zeros((56, 112, 3), np.uint8)
    img[:28, :28] = 255  # top-left merge block (2x2 patches of 14 px)
    patches, grid = patchify(img, 14, 2, 2)
    assert grid == (1, 4, 8) and patches.shape == (32, 3 * 2 * 14 * 14)
    bright = patches.mean(dim=1) > 0
    assert bright[:4].all() and not bright[4:].any()
    order = raster_to_processor_order(4, 8, 2)
    assert order[:4].tolist() == [0, 1, 8, 9]


def test_depth_pe_backprojects_and_centres_a_plane():
    intr = Intrinsics.from_hfov(112, 56, 90.0)
    depth = np.full((56, 112), 2.0, np.float32)
    pts = pooled_points(depth, intr, (4, 8))
    assert np.allclose(pts[..., 2], -2.0)
    assert pts[0, 0, 0] < 0 < pts[0, -1, 0] and pts[0, 0, 1] > 0 > pts[-1, 0, 1]  # x right, y up
    pe = depth_pe(depth, intr, (4, 8), 192)
    assert pe.shape == (32, 192)
    # centred: the pooled points' mean maps to PE(0) = sin 0 / cos 0 interleaved
    zero = sine_pe_3d(torch.zeros(1, 3), 192)[0]
    assert torch.equal(zero[0:4], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    depth2 = depth.copy()
    depth2[:, :56] = 4.0  # a different scene gives a different encoding
    assert not torch.allclose(pe, depth_pe(depth2, intr, (4, 8), 192))


# ------------------------------------------------------------------ audio + text

def test_log_mel_matches_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor

    wave = np.random.default_rng(0).normal(size=8000).astype(np.float32) * 0.1
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400)
    ref = fe(wave, sampling_rate=16000, return_tensors="np", padding="max_length")["input_features"][0]
    ours = log_mel(wave).numpy()
    assert ours.shape == (128, 50)
    np.testing.assert_allclose(ours, ref[:, :50], atol=2e-3)
    assert audio_token_count(50) == 12 and audio_token_count(500) == 125  # 25 tokens/s


def test_tokenizer_round_trips_answers_and_keeps_digits_single(tokenizer):
    ids = special_ids(tokenizer)
    assert len(set(ids.values())) == len(ids)
    text = "bbox_0=Bbox(speaker, 14, -48, -115, 33, 88, 32)\nazimuth: -7; elevation: -22"
    enc = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(enc) == text
    assert all(len(t.lstrip("Ġ")) <= 1 for t in tokenizer.convert_ids_to_tokens(enc) if any(c.isdigit() for c in t))


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown setting"):
        JaegerConfig.from_dict({"preset": "tiny", "ivv": "neural"})
    with pytest.raises(ValueError, match="iv must be"):
        JaegerConfig(iv="magic")
    with pytest.raises(ValueError, match="base_model_path"):
        JaegerConfig(preset="qwen2.5-omni-7b")


# ------------------------------------------------------------------ end to end

def _query(task: str, rng: np.random.Generator) -> dict:
    intr = Intrinsics.from_hfov(224, 112, 90.0)
    return dict(rgb=rng.integers(0, 255, (112, 224, 3), dtype=np.uint8),
                depth=rng.uniform(1, 4, (112, 224)).astype(np.float32), intrinsics=intr,
                foa=rng.normal(size=(4, 12000)).astype(np.float32) * 0.1, sample_rate=16000, task=task,
                target="female" if task in "BE" else None)


def test_forward_shapes_and_loss_only_on_answer_tokens(model):
    rng = np.random.default_rng(0)
    b = model.builder
    items = []
    for task in "ABCDE":
        q = _query(task, rng)
        x = b.inputs(task, q["rgb"], q["depth"], q["intrinsics"], q["foa"], 16000)
        items.append((*b.encode(b.prompt(task, "Where?"), "Left"), x))
    batch = b.collate(items)
    assert batch["foa"].shape == (4, 4, 8000) and batch["input_features"].shape == (4, 128, 50)
    assert batch["pixel_values"].shape[0] == 3 * 32 and batch["depth_pe"].shape == (96, 192)
    n_answer = int((batch["labels"] != -100).sum())
    assert n_answer == 5 * len(model.tokenizer("Left<|im_end|>", add_special_tokens=False)["input_ids"])
    out = model(batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.loss)
    # the IV reaches the output: changing only the dipole channels changes the logits
    batch2 = dict(batch, foa=batch["foa"].clone())
    batch2["foa"][:, 1:] *= -1
    with torch.no_grad():
        assert not torch.allclose(model(batch2).logits, out.logits, atol=1e-5)
    # and so does the depth PE
    batch3 = dict(batch, depth_pe=batch["depth_pe"] * 0)
    with torch.no_grad():
        assert not torch.allclose(model(batch3).logits, out.logits, atol=1e-5)
    assert (describe(model)["iv"] > 0) == (model.config.iv == "neural")  # Classical IV has no weights


def test_save_load_round_trip_gives_same_answers(model, tmp_path):
    rng = np.random.default_rng(1)
    queries = [_query(t, rng) for t in "ACE"]
    before = JaegerPredictor(model).predict_batch(queries)
    model.save_pretrained(tmp_path / "ck")
    loaded = JaegerPredictor.from_pretrained(tmp_path / "ck")
    after = loaded.predict_batch(queries)
    assert [p.raw_text for p in before] == [p.raw_text for p in after]
    for name, p in model.state_dict().items():
        assert torch.equal(p, loaded.model.state_dict()[name]), name


def test_predictor_reports_malformed_generation_without_raising(model):
    pred = JaegerPredictor(model)
    bad = pred.parse("A", "azimuth: banana", 0.3)
    assert not bad.valid and bad.raw_text == "azimuth: banana" and bad.official_text() == ""
    good = pred.parse("C", "bbox_0=Bbox(speaker, 14, -48, -115, 33, 88, 32)", 0.9)
    assert good.valid and np.allclose(good.boxes[0].center, [0.14, -0.48, -1.15])
    assert good.official_text() == "bbox_0=Bbox(speaker, 0.14, -0.48, -1.15, 0.33, 0.88, 0.32)"
    right = pred.parse("E", "Right", 0.9, num_candidates=3)
    assert right.match_label == "Right" and right.match_index == 2
    out = pred.predict(**_query("B", np.random.default_rng(2)))
    assert isinstance(out.raw_text, str) and 0.0 <= out.confidence <= 1.0
    with pytest.raises(ValueError, match="target"):
        pred.predict(**{**_query("E", np.random.default_rng(2)), "target": None})
    with pytest.raises(ValueError, match="FOA"):
        pred.predict(**{**_query("A", np.random.default_rng(2)), "foa": np.zeros((3, 100))})


def test_loss_weighs_each_sample_equally_whatever_its_answer_length():
    """A one-token answer and a ten-token answer count the same in the batch loss."""
    torch.manual_seed(0)
    logits = torch.randn(2, 12, 7)
    labels = torch.full((2, 12), -100)
    labels[0, 11] = 3  # one answer token
    labels[1, 2:12] = torch.arange(10) % 7  # ten answer tokens
    ce = torch.nn.functional.cross_entropy
    short = ce(logits[0, 10:11], labels[0, 11:12])
    long = ce(logits[1, 1:11], labels[1, 2:12])
    assert float(answer_loss(logits, labels)[0]) == pytest.approx(float((short + long) / 2), rel=1e-5)
    token_mean = ce(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1))
    assert float(token_mean) != pytest.approx(float((short + long) / 2), rel=1e-3)


def test_release_depth_pe_order_worked_example():
    """The release's PE-to-patch order on its 28 x 48 grid (reference: 'Depth PE order as
    released'): processor-order patch j gets the PE of row-major cell j, so a merged token
    (bh, bw) carries the 1 x 4 strip at row 2bh, columns 4bw..4bw+3 (bw < 12), or row 2bh+1,
    columns 4(bw-12)..4(bw-12)+3 (bw >= 12); only 56 of 1344 patches get their own cell."""
    gh, gw = 28, 48
    release, own = pe_rows_for_patches(gh, gw, 2, release=True), pe_rows_for_patches(gh, gw, 2)
    assert int((release == own).sum()) == 56
    for bh, bw in [(0, 0), (3, 5), (13, 11), (0, 12), (5, 23), (13, 23)]:
        token = slice(4 * (bh * 24 + bw), 4 * (bh * 24 + bw) + 4)
        rows, cols = (release[token] // gw).tolist(), (release[token] % gw).tolist()
        row, first = (2 * bh, 4 * bw) if bw < 12 else (2 * bh + 1, 4 * (bw - 12))
        assert rows == [row] * 4 and cols == list(range(first, first + 4))
        # what the token really covers (our order): the 2 x 2 block at (2bh, 2bw)
        assert sorted((own[token] // gw).tolist()) == [2 * bh] * 2 + [2 * bh + 1] * 2
        assert sorted((own[token] % gw).tolist()) == [2 * bw, 2 * bw, 2 * bw + 1, 2 * bw + 1]


def test_release_compat_builder_puts_raster_pe_on_patches(tokenizer):
    """With release_compat the builder's depth PE is the release's (bf16 cloud at 672 x 378,
    raster order on the patches); without it, each patch gets its own cell's PE."""
    from jaeger_ros.model.depth_pe import release_depth_pe
    from jaeger_ros.model.data import InputBuilder

    intr = Intrinsics.from_hfov(672, 378, 90.0)
    depth = np.tile(np.linspace(1.0, 5.0, 672, dtype=np.float32), (378, 1))
    rgb = np.zeros((378, 672, 3), np.uint8)
    vision = {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 1, "window_size": 112,
              "hidden_size": 1280}
    cfg = small_config(image_size=[672, 392], depth_pe_absolute=False)
    rel = InputBuilder(cfg.replace(release_compat=True), tokenizer, vision).vision(rgb, depth, intr)[2]
    ours = InputBuilder(cfg, tokenizer, vision).vision(rgb, depth, intr)[2]
    raster = release_depth_pe(depth, intr, (28, 48), 1280)
    assert torch.equal(rel, raster)  # patch j <- raster cell j
    assert not torch.allclose(ours, raster, atol=1e-3)


def test_patchify_takes_a_read_only_camera_frame_silently():
    """Frames decoded from ROS messages are read-only arrays; torch warns on wrapping those, and
    the node printed that warning at every start. Values: 255 -> (1 - mean) / std per channel."""
    import warnings

    from jaeger_ros.model.depth_pe import IMAGE_MEAN, IMAGE_STD
    img = np.full((28, 28, 3), 255, np.uint8)
    img.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        patches, _ = patchify(img, 14, 2, 2)
    expected = sorted((1.0 - m) / s for m, s in zip(IMAGE_MEAN, IMAGE_STD))
    assert np.allclose(sorted(set(np.round(patches.numpy().ravel(), 5))), np.round(expected, 5))
