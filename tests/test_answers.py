"""Answer strings: byte-identical round trip of every official manifest entry, strict and
lenient parsing, matching labels, prompts."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from jaeger_ros.core import answers
from jaeger_ros.core.answers import AnswerParseError, DoaAnswer
from jaeger_ros.core.geometry import Box3D

OFFICIAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "spatialsceneqa"
needs_official = pytest.mark.skipif(
    not OFFICIAL.is_dir(),
    reason=f"official SpatialSceneQA manifests not present at {OFFICIAL} (shared data folder "
           "beside the repository); they are the ground truth for the answer formats")


@pytest.fixture(scope="module")
def manifests() -> dict[str, list[dict]]:
    """File name -> annotation list of every official manifest (prompt files excluded)."""
    return {p.name: json.loads(p.read_text())["annotation"]
            for p in sorted(OFFICIAL.glob("*.json")) if not p.name.startswith("prompts__")}


# ----------------------------------------------------------------------------- round trip


@needs_official
def test_every_official_answer_round_trips_byte_identical(manifests):
    seen_tokens: Counter = Counter()
    checked = 0
    for name, entries in manifests.items():
        for e in entries:
            typed = answers.parse_answer(e["task"], e["text"])
            assert answers.format_answer(e["task"], typed) == e["text"], (name, e["text"])
            lenient = answers.extract_answer(e["task"], e["text"])
            assert answers.format_answer(e["task"], lenient) == e["text"], (name, e["text"])
            if isinstance(typed, DoaAnswer):
                assert typed.text == e["text"]
            seen_tokens.update(t.strip("(),") for t in e["text"].replace(";", " ").split())
            checked += 1
    assert checked == sum(len(v) for v in manifests.values()) > 20000
    # The tricky spellings really occur, so the round trip above exercised them.
    for token in ("-0.00", "0.00", "-0.0", "0.0", "0"):
        assert seen_tokens[token] > 0, token
    assert seen_tokens["-0"] == 0  # integer DoA never writes "-0": format_doa does not either


@needs_official
def test_manifest_tasks_and_doa_decimals(manifests):
    tasks = {e["task"] for entries in manifests.values() for e in entries}
    assert tasks == {"spatial_doa", "multi_spatial_doa", "visual_grounding", "single_source",
                     "dual_source", "starss23"}
    for name, entries in manifests.items():
        for e in entries:
            key = answers.task_key(e["task"])
            if answers.ANSWER_KIND[key] == "doa":
                doa = answers.parse_doa(e["text"])
                assert doa.decimals == (1 if "starss23" in name else 0)
                assert doa.decimals == answers.DOA_DECIMALS[key]


@needs_official
def test_matching_manifests_agree_with_label_rules(manifests):
    for name, entries in manifests.items():
        if entries[0]["task"] not in ("single_source", "dual_source"):
            continue
        counts = Counter(e["text"] for e in entries)
        for e in entries:
            rank = answers.rank_from_label(e["text"], e["num_speakers"])  # Center only with 3
            assert answers.match_label(rank, e["num_speakers"]) == e["text"]
            if e["task"] == "dual_source":
                assert answers.target_label(e["gender"], e["text"]) == e["target_label"]
                assert answers.parse_target_label(e["target_label"]) == (e["gender"], e["text"])
        # Left and Right are near balanced in every official split.
        assert 0.4 < counts["Left"] / (counts["Left"] + counts["Right"]) < 0.6, name


@needs_official
def test_grounding_manifests_ids_left_to_right(manifests):
    multi = sorted_lr = 0
    sizes = []
    for name, entries in manifests.items():
        if entries[0]["task"] != "visual_grounding":
            continue
        for e in entries:
            boxes = answers.parse_boxes(e["text"])
            assert [b.extra["bbox_id"] for b in boxes] == list(range(len(boxes)))
            assert e["obj_category"] == [b.label for b in boxes]
            sizes.extend(b.size for b in boxes)
            if len(boxes) > 1:
                multi += 1
                sorted_lr += answers.azimuth_order(boxes) == list(range(len(boxes)))
    assert multi > 2000 and sorted_lr == multi  # bbox ids left to right by azimuth, every one
    sizes = np.array(sizes)
    assert np.all(sizes > 0.1) and np.all(sizes < 1.0)  # floor-standing loudspeakers, metres


# ----------------------------------------------------------------------------- DoA


def test_format_doa_styles_and_signed_zero():
    assert answers.format_doa(-7, -22) == "azimuth: -7; elevation: -22"
    assert answers.format_doa(-7.4, -21.6) == "azimuth: -7; elevation: -22"
    assert answers.format_doa(-0.3, 0.2) == "azimuth: 0; elevation: 0"
    assert answers.format_doa(np.float64(-13.94), np.float32(-10.8), 1) == "azimuth: -13.9; elevation: -10.8"
    assert answers.format_doa(-0.04, 0.0, 1) == "azimuth: -0.0; elevation: 0.0"  # as STARSS23 writes
    assert answers.parse_doa("azimuth: -0.0; elevation: 0.0").text == "azimuth: -0.0; elevation: 0.0"
    with pytest.raises(ValueError, match="azimuth"):
        answers.format_doa(181, 0)
    with pytest.raises(ValueError, match="elevation"):
        answers.format_doa(0, -91)
    with pytest.raises(ValueError, match="finite"):
        DoaAnswer(float("nan"), 0)


@pytest.mark.parametrize("text", [
    "azimuth: 12; elevation: -3.", "azimuth:12; elevation:-3", " azimuth: 12; elevation: -3",
    "azimuth: 12; elevation: -3.5", "Azimuth: 12; Elevation: -3", "azimuth: 181; elevation: 0",
    "azimuth: 0; elevation: 95", "elevation: -3; azimuth: 12", "", "azimuth: ; elevation: 3"])
def test_parse_doa_rejects_malformed(text):
    with pytest.raises(AnswerParseError):
        answers.parse_doa(text)


def test_parse_answer_checks_task_decimals():
    assert answers.parse_answer("A", "azimuth: 3; elevation: 4") == DoaAnswer(3, 4, 0)
    assert answers.parse_answer("starss23", "azimuth: 3.0; elevation: 4.5") == DoaAnswer(3, 4.5, 1)
    with pytest.raises(AnswerParseError, match="decimals"):
        answers.parse_answer("A", "azimuth: 1.5; elevation: 2.0")
    with pytest.raises(AnswerParseError, match="decimals"):
        answers.parse_answer("starss23", "azimuth: 1; elevation: 2")
    with pytest.raises(AnswerParseError):
        answers.parse_answer("B", None)  # type: ignore[arg-type]
    assert issubclass(AnswerParseError, ValueError)


@pytest.mark.parametrize("text, task, expected", [
    ("The azimuth: 12; elevation: -3.", "A", DoaAnswer(12, -3, 0)),
    ("  azimuth: 12; elevation: -3\n", "B", DoaAnswer(12, -3, 0)),
    ("Azimuth = 12.5°, elevation is \u22123 degrees", "A", DoaAnswer(12.5, -3, 0)),
    ("azimuth: 12; elevation: -3", "starss23", DoaAnswer(12, -3, 1)),  # missing decimals
    ("elevation: 5, azimuth: -170", "A", DoaAnswer(-170, 5, 0)),
    ("The sound comes from azimuth 40 and elevation -20.", "spatial_doa", DoaAnswer(40, -20, 0)),
])
def test_extract_doa_tolerates_model_noise(text, task, expected):
    assert answers.extract_answer(task, text) == expected


@pytest.mark.parametrize("text", [
    None, "", "I cannot tell.", "azimuth: 12", "azimuth: 200; elevation: 0",
    "elevation and azimuth: 5, 3", "azimuth: left; elevation: up"])
def test_extract_doa_returns_none_for_unusable_text(text):
    assert answers.extract_answer("A", text) is None


def test_extract_never_raises_on_random_text():
    rng = random.Random(3)
    alphabet = "azimuth elevation bbox_=Bbox(speaker,0123456789.-; )\nLeftRightCenter°"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        for task in ("A", "starss23", "C", "D", "E"):
            answers.extract_answer(task, text)


# ----------------------------------------------------------------------------- grounding


def test_format_boxes_example_and_round_trip():
    boxes = [Box3D([0.14, -0.48, -1.15], [0.33, 0.88, 0.32]),
             Box3D([0.5, -0.4, -2.0], [0.3, 0.6, 0.3], label="speaker")]
    text = answers.format_boxes(boxes)
    assert text == ("bbox_0=Bbox(speaker, 0.14, -0.48, -1.15, 0.33, 0.88, 0.32)\n"
                    "bbox_1=Bbox(speaker, 0.50, -0.40, -2.00, 0.30, 0.60, 0.30)")
    parsed = answers.parse_boxes(text)
    assert [b.extra["bbox_id"] for b in parsed] == [0, 1]
    for p, b in zip(parsed, boxes):
        np.testing.assert_array_equal(p.center, b.center)
        np.testing.assert_array_equal(p.size, b.size)
    rng = np.random.default_rng(0)
    for _ in range(50):
        b = Box3D(rng.uniform(-3, 3, 3), rng.uniform(0, 1, 3))
        (p,) = answers.parse_boxes(answers.format_boxes([b]))
        np.testing.assert_allclose(p.center, b.center, atol=0.005 + 1e-12)
        np.testing.assert_allclose(p.size, b.size, atol=0.005 + 1e-12)
    assert answers.format_boxes([Box3D([-0.001, 0.0, -1], [0.3, 0.3, 0.3])]).startswith(
        "bbox_0=Bbox(speaker, -0.00, 0.00, -1.00")  # the manifests' %.2f spelling


def test_boxes_in_centimetres_match_the_official_training_target():
    (box,) = answers.parse_boxes("bbox_0=Bbox(speaker, 0.14, -0.48, -1.15, 0.33, 0.88, 0.32)")
    # int(x * 100) truncates toward zero, as the official dataset.py does (0.29*100 = 28.99..)
    assert answers.format_boxes([box], units="cm") == "bbox_0=Bbox(speaker, 14, -48, -114, 33, 88, 32)"
    (back,) = answers.parse_boxes("bbox_0=Bbox(speaker, 14, -48, -115, 33, 88, 32)", units="cm")
    np.testing.assert_allclose(back.center, [0.14, -0.48, -1.15])
    with pytest.raises(AnswerParseError, match="integers"):
        answers.parse_boxes("bbox_0=Bbox(speaker, 0.14, -48, -115, 33, 88, 32)", units="cm")
    with pytest.raises(ValueError, match="units"):
        answers.format_boxes([box], units="mm")  # type: ignore[arg-type]


@pytest.mark.parametrize("text, match", [
    ("bbox_1=Bbox(speaker, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)", "ids must be"),
    ("bbox_0=Bbox(speaker, 0.1, 0.2, 0.3, -0.4, 0.5, 0.6)", "invalid box"),
    ("bbox_0=Bbox(speaker, 0.1, 0.2, 0.3, 0.4, 0.5)", "not 'bbox_i"),
    ("bbox_0=Bbox(speaker, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)\n", "line 1"),
    ("", "line 0"),
])
def test_parse_boxes_rejects_malformed(text, match):
    with pytest.raises(AnswerParseError, match=match):
        answers.parse_boxes(text)


def test_format_boxes_rejects_unwritable_label():
    with pytest.raises(ValueError, match="label"):
        answers.format_boxes([Box3D([0, 0, -1], [0.3, 0.3, 0.3], label="a, b")])


def test_extract_boxes_lenient():
    # The official scorer's "format B" example (centimetre integers, comma after Bbox).
    text = "Sure! bbox 0=Bbox, speaker, 11, -48, -108, 31, 87, 31. bbox_2=Bbox(speaker, 1, 2, 3, 4, 5, 6)"
    boxes = answers.extract_answer("C", text, units="cm")
    assert [b.extra["bbox_id"] for b in boxes] == [0, 2]  # ids kept for id-matched scoring
    np.testing.assert_allclose(boxes[0].center, [0.11, -0.48, -1.08])
    np.testing.assert_allclose(boxes[1].size, [0.04, 0.05, 0.06])
    dup = ("bbox_0=Bbox(speaker, 0.1, 0.2, -1.0, 0.3, 0.6, 0.3)\n"
           "bbox_0=Bbox(speaker, 9.0, 0.2, -1.0, 0.3, 0.6, 0.3)\n"
           "bbox_1=Bbox(speaker, 0.1, 0.2, -1.0, -0.3, 0.6, 0.3)")  # negative size: dropped
    (first,) = answers.extract_answer("visual_grounding", dup)
    assert first.center[0] == 0.1
    assert answers.extract_answer("C", "no loudspeakers here") is None


# ----------------------------------------------------------------------------- matching


def test_match_labels_by_candidate_count():
    assert [answers.match_label(r, 2) for r in range(2)] == ["Left", "Right"]
    assert [answers.match_label(r, 3) for r in range(3)] == ["Left", "Center", "Right"]
    assert answers.match_label(0, 1) == "Center"
    assert [answers.match_label(r, 4) for r in range(4)] == ["Left", "Left 2", "Right 2", "Right"]
    assert [answers.match_label(r, 5) for r in range(5)] == ["Left", "Left 2", "Center", "Right 2", "Right"]
    assert [answers.match_label(r, 6) for r in range(6)] == ["Left", "Left 2", "Left 3", "Right 3", "Right 2",
                                                             "Right"]
    for n in range(1, 12):
        labels = [answers.match_label(r, n) for r in range(n)]
        assert len(set(labels)) == n and all(labels), labels   # non-empty and unique for every count
        swap = {"Left": "Right", "Right": "Left", "Center": "Center"}
        mirrored = [" ".join([swap[lab.split()[0]], *lab.split()[1:]]) for lab in reversed(labels)]
        assert labels == mirrored                               # mirror image: Left k <-> Right k
        for r in range(n):
            assert answers.rank_from_label(labels[r], n) == r
    for bad_n in (0, -1):
        with pytest.raises(ValueError, match="at least 1 candidate"):
            answers.match_label(0, bad_n)
    for bad_rank, n in ((2, 2), (-1, 3), (4, 4)):
        with pytest.raises(ValueError, match="rank"):
            answers.match_label(bad_rank, n)
    with pytest.raises(ValueError, match="not valid"):
        answers.rank_from_label("Center", 2)
    with pytest.raises(ValueError, match="not valid"):
        answers.rank_from_label("Left 2", 3)


def test_labels_beyond_three_candidates_are_not_answer_strings():
    # The official tasks have 2-3 candidates: only their labels may be written or parsed as answers.
    with pytest.raises(ValueError):
        answers.format_match("Left 2")
    with pytest.raises(answers.AnswerParseError):
        answers.parse_match("Right 2")
    assert answers.parse_match(answers.format_match(answers.match_label(0, 1))) == "Center"


def test_match_strings_and_target_label():
    assert answers.format_match("Center") == "Center"
    assert answers.parse_answer("D", "Right") == "Right"
    for bad in ("left", "Centre", " Left", "Unknown"):
        with pytest.raises(AnswerParseError):
            answers.parse_match(bad)
    with pytest.raises(ValueError):
        answers.format_match("left")
    assert answers.target_label("F", "Left") == "female: Left"
    assert answers.target_label("male", "Center") == "male: Center"
    assert answers.parse_target_label("female: Left") == ("female", "Left")
    with pytest.raises(AnswerParseError):
        answers.parse_target_label("female Left")
    with pytest.raises(ValueError, match="gender"):
        answers.target_label("x", "Left")


@pytest.mark.parametrize("text, expected", [
    ("Left", "Left"), (" right\n", "Right"), ("The speaker in the middle.", "Center"),
    ("female: Left", "Left"), ("centre", "Center"), ("Unknown", None), ("", None),
    ("Left or Right", None), ("Leftmost", None)])
def test_extract_match(text, expected):
    assert answers.extract_answer("E", text) == expected


def test_task_keys():
    assert answers.task_key("a") == "A"
    assert answers.task_key("spatial_doa") == "A"
    assert answers.task_key("multi_spatial_doa") == "B"
    assert answers.task_key("dual_source") == "E"
    assert answers.task_key("starss23") == "starss23"
    assert "spatial_doa" in answers.TASK_NAMES_ACCEPTED["B"]
    assert answers.TASKS["B"] == "multi_spatial_doa"
    with pytest.raises(ValueError, match="unknown task"):
        answers.task_key("F")


# ----------------------------------------------------------------------------- prompts


@needs_official
def test_packaged_prompt_files_equal_the_official_ones():
    for split in ("train", "test"):
        packaged = Path(answers.__file__).parent / f"prompts_{split}.json"
        assert packaged.read_bytes() == (OFFICIAL / f"prompts__{split}_prompt.json").read_bytes()


def test_load_prompts_shapes(tmp_path):
    train, test = answers.packaged_prompts("train"), answers.packaged_prompts("test")
    assert set(train) == set(test) == set(answers.TASKS.values())
    assert all(len(v) == 1 for v in test.values())
    assert len(train["spatial_doa"]) == 10 and len(train["single_source"]) == 9
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"spatial_doa": [1, 2]}))
    with pytest.raises(ValueError, match="spatial_doa"):
        answers.load_prompts(bad)
    bad.write_text("[]")
    with pytest.raises(ValueError, match="JSON object"):
        answers.load_prompts(bad)


def test_build_prompt_fills_fields_like_the_official_collator():
    assert answers.build_prompt("B", gender="F") == (
        "Where is the female voice coming from? Output azimuth and elevation.")
    assert answers.build_prompt("dual_source", gender="male") == (
        "Identify the source speaker for the male voice.")
    c = answers.build_prompt("C", obj_category=["speaker", "speaker", "speaker"])
    assert c.startswith("Identify the 3D boxes for the speaker, speaker, and speaker in this scene.")
    assert answers.build_prompt("C", obj_category=["speaker"]).startswith("Identify the 3D boxes for the speaker in")
    assert "{" not in answers.build_prompt("starss23", gender="M")
    with pytest.raises(ValueError, match="gender"):
        answers.build_prompt("E")
    with pytest.raises(ValueError, match="obj_category"):
        answers.build_prompt("C")
    with pytest.raises(ValueError, match="index"):
        answers.build_prompt("A", 1)


def test_build_prompt_random_choice_covers_train_templates():
    train = answers.packaged_prompts("train")
    draws = [answers.build_prompt("E", random.Random(s), gender="F", prompts=train) for s in range(200)]
    assert len(set(draws)) == len(train["dual_source"])
    assert all("female" in d and "{" not in d for d in draws)
    rng = np.random.default_rng(1)
    a = [answers.build_prompt("D", rng, prompts=train) for _ in range(20)]
    rng = np.random.default_rng(1)
    assert a == [answers.build_prompt("D", rng, prompts=train) for _ in range(20)]
    assert answers.build_prompt("A", 3, prompts=train) == train["spatial_doa"][3]


def test_chat_template():
    chat = answers.CHAT_TEMPLATE.format(answers.build_prompt("D"))
    assert chat == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "Determine which speaker corresponds to the audio source.<|im_end|>\n"
                    "<|im_start|>assistant\n")


# ----------------------------------------------------------------------------- official parser

def _documented_angle(text: str, word: str) -> float | None:
    """The authors' DoA regex as the reference documents it, written as a hand scanner: every
    case-insensitive occurrence of the word, in order; after it one or more ':' or whitespace
    characters, an optional sign, then digits with at most one '.', at least one digit after
    the '.' if one is taken; the first occurrence that fits wins."""
    low, start = text.lower(), 0
    while (at := low.find(word, start)) >= 0:
        start = at + 1
        i = at + len(word)
        j = i
        while j < len(text) and (text[j] == ":" or text[j].isspace()):
            j += 1
        if j == i:
            continue
        k = j + (j < len(text) and text[j] in "+-")
        digits = ""
        while k < len(text) and text[k].isdigit():
            digits += text[k]
            k += 1
        if k + 1 < len(text) and text[k] == "." and text[k + 1].isdigit():
            frac = ""
            k += 1
            while k < len(text) and text[k].isdigit():
                frac += text[k]
                k += 1
            number = f"{digits or '0'}.{frac}"
        elif digits:
            number = digits
        else:
            continue
        return float(("-" if text[j] == "-" else "") + number)
    return None


# raw generation -> (azimuth, elevation) the authors' scorer reads, by hand (None = dropped)
OFFICIAL_TABLE = {
    "azimuth: -7; elevation: -22": (-7.0, -22.0),
    "azimuth: 185; elevation: 3": (185.0, 3.0),              # no range check: scored
    "azimuth is about 30; elevation: 2": None,               # words between: rejected
    "Azimuth=-20; elevation: 5": None,                       # '=' is not ':' or space
    "AZIMUTH: 12 ELEVATION:\n-4": (12.0, -4.0),
    "azimuth: .5; elevation: 1": (0.5, 1.0),
    "azimuth: 30.; elevation: 1.25.7": (30.0, 1.25),
    "azimuth: - 5; elevation: 1": None,
    "azimuth: +7; elevation: -0": (7.0, -0.0),
    "azimuth is left, azimuth: 40; elevation: 1": (40.0, 1.0),  # a later occurrence counts
    "azimuth: 10": None,                                     # no elevation
    "the source is at 30 degrees": None,
    "azimuth:-13.9; elevation:-10.8": (-13.9, -10.8),
    "azimuth\t 3 elevation  4": (3.0, 4.0),
}


@pytest.mark.parametrize("text", sorted(OFFICIAL_TABLE))
def test_official_doa_parser_matches_the_documented_regex(text):
    want = OFFICIAL_TABLE[text]
    scanned = (_documented_angle(text, "azimuth"), _documented_angle(text, "elevation"))
    assert (None if None in scanned else scanned) == want  # the scanner agrees with the hand table
    got = answers.extract_answer("A", text, parser="official")
    assert (None if got is None else (got.azimuth, got.elevation)) == want


def test_official_and_lenient_parsers_differ_where_documented():
    assert answers.extract_answer("A", "azimuth is about 30; elevation: 2") is not None
    assert answers.extract_answer("A", "azimuth is about 30; elevation: 2", parser="official") is None
    assert answers.extract_answer("B", "azimuth: 185; elevation: 3") is None
    assert answers.extract_answer("B", "azimuth: 185; elevation: 3", parser="official").azimuth == 185.0
    # matching: exact after strip / lower / trailing '.'; the lenient one finds a lone label word
    assert answers.extract_answer("D", " left. ", parser="official") == "Left"
    assert answers.extract_answer("D", "The Left speaker", parser="official") is None
    assert answers.extract_answer("D", "The Left speaker") == "Left"
    assert answers.extract_answer("E", "Unknown", parser="official") is None
    with pytest.raises(ValueError, match="parser"):
        answers.extract_answer("A", "azimuth: 1; elevation: 2", parser="strict")
