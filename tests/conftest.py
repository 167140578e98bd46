"""Shared fixtures: a private ROS 2 context per test module (random domain, localhost only) and a
tiny Qwen2.5-Omni base model saved to disk."""
import os
import random
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context


@pytest.fixture(scope="module")
def context():
    """rclpy initialised on a random ROS_DOMAIN_ID, discovery limited to this host."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 200))
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    """A tiny Qwen2.5-Omni thinker and its tokenizer saved as a local base model, in the format
    of the 7B weights (save_pretrained), for the 7B code paths."""
    import torch
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from jaeger_ros.model.config import TrainConfig
    from jaeger_ros.model.modeling import tiny_thinker_config
    from jaeger_ros.model.tokenizer import train_tokenizer

    tok = train_tokenizer(512)
    torch.manual_seed(0)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(
        tiny_thinker_config(TrainConfig().model_config(Path(__file__).resolve().parents[1] / "config"), tok))
    path = tmp_path_factory.mktemp("qwen")
    thinker.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path
