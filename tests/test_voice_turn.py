"""turn_to_speaker's `target`: the talker heard last, or one voice identity, faced even while
silent (real rclpy node, private random domain; the planner ROS-free)."""
from __future__ import annotations

import math

import pytest
from rclpy.parameter import Parameter

from jaeger_ros.msg import Talker, TalkerArray
from jaeger_ros.ros import convert as rc
from jaeger_ros.tracker.turning import Track, TurnConfig, TurnPlanner


def test_a_followed_track_turns_the_robot_without_any_doa():
    """No DoA at all: a followed track 90 deg to the left starts a left turn at the largest rate
    (gain x 90 deg = 4.7 rad/s, clipped to max_angular_rps) and stops inside the dead band; the
    same track not followed (a talking track needs agreeing DoAs) does nothing."""
    cfg = TurnConfig()
    track = Track(7, math.pi / 2, heard=1.0)
    assert TurnPlanner(cfg).step(5.0, 0.0, track) == 0.0
    planner = TurnPlanner(cfg)
    assert planner.step(5.0, 0.0, track, follow=True) == pytest.approx(cfg.max_angular_rps)
    assert planner.target_id == 7
    heading = math.pi / 2 - math.radians(cfg.dead_band_deg / 4)    # arrived: inside half the dead band
    assert planner.step(6.0, heading, track, follow=True) == 0.0 and not planner.turning
    assert planner.step(6.1, heading, track, follow=True) == 0.0 and planner.turns == 1  # facing it: no new turn


def _talker(track_id: int, voice_id: str, heard: float, talking: bool) -> Talker:
    return Talker(id=track_id, voice_id=voice_id, voice="female", last_heard=rc.seconds_to_stamp(heard), talking=talking)


def test_the_target_picks_the_last_talker_or_a_voice_and_bad_targets_are_refused(context):
    from jaeger_ros.ros.turn_to_speaker import TurnToSpeaker

    with pytest.raises(ValueError, match="target must be"):
        TurnToSpeaker(context=context, parameter_overrides=[Parameter("target", value="Bob")])
    node = TurnToSpeaker(context=context, parameter_overrides=[Parameter("target", value="last")])
    try:
        now = node._now()
        node.talkers = TalkerArray(talkers=[_talker(1, "voice_0", now - 20.0, False),
                                            _talker(2, "voice_1", now - 5.0, False)], current_id=-1)
        assert node._talking_track(now)[0].id == 2          # nobody talks: the one heard last
        assert node.set_parameters([Parameter("target", value="voice_0")])[0].successful
        assert node._talking_track(now)[0].id == 1          # that voice, silent for 20 s
        refused = node.set_parameters([Parameter("target", value="voice_x")])[0]
        assert not refused.successful and "voice_<n>" in refused.reason and node.p["target"] == "voice_0"
        assert node.set_parameters([Parameter("target", value="")])[0].successful
        assert node._talking_track(now) is None             # default: only a talking track counts
    finally:
        node.destroy_node()
