"""params.Spec ranges open at the low end (a rate or a period must be above 0, not 0), which
jaeger_node's parameter table now uses instead of its own copy of the checks."""
from __future__ import annotations

import pytest

from jaeger_ros.ros.params import Spec, check


def test_an_open_low_bound_refuses_the_bound_itself():
    rate = Spec("rate_hz", 10.0, "Hz", 0.0, 200.0, low_open=True)
    assert check(rate, 1e-9) == 1e-9 and check(rate, 200) == 200.0
    with pytest.raises(ValueError, match=r"rate_hz = 0\.0 is outside \(0, 200\]"):
        check(rate, 0.0)
    closed = Spec("slop", 0.02, "s", 0.0, 1.0)
    assert check(closed, 0.0) == 0.0
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        check(closed, 1.5)


@pytest.mark.parametrize("name, value, ok", [("rate_hz", 0.0, False), ("rate_hz", 0.5, True), ("slop", 0.0, True),
                                             ("window_s", 0.0, False), ("max_future_s", 0.0, True),
                                             ("queue_size", 0, False), ("queue_size", 1, True),
                                             ("candidates", "depth", True), ("candidates", "blobs", False),
                                             ("vad", False, True), ("vad", 1, False)])
def test_jaeger_node_checks_through_params_check(name, value, ok):
    from jaeger_ros.ros.jaeger_node import check_parameter
    if ok:
        assert check_parameter(name, value) == value
    else:
        with pytest.raises(ValueError, match=name):
            check_parameter(name, value)
