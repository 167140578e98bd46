"""Shared fixtures: a private ROS 2 context per test module (random domain, localhost only)."""
import os
import random

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
