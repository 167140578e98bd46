"""Declared parameters of the node executables: one table per node, static types, ranges, descriptions.

Why a table: `ros2 param describe` then shows each parameter's meaning, unit, range and whether a
live change applies (read_only: the node reads it once at start-up, so `ros2 param set` is
refused with that reason instead of being accepted and ignored). Types are static (no
dynamic_typing): an integer parameter cannot become a double or a string at run time. One
convenience is kept on the command line: `-p rate_hz:=10` (an integer literal for a double
parameter) is taken as 10.0, as the YAML loader of a params file would for `10.0`.

A bad value at start-up raises ValueError with one line naming the parameter (the runner prints
it and exits 1).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidTopicNameException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.validate_topic_name import validate_topic_name

READ_AT_START = " (read at start-up: restart the node to change it)"


class Spec(NamedTuple):
    """One parameter: its default fixes its type; low/high its range (closed, or open at low with
    low_open: a period or a rate must be above 0, not 0); choices for strings."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = False  # a live change applies; False: read_only
    low_open: bool = False  # low itself is outside the range


def _type(default: Any) -> int:
    if isinstance(default, bool):
        return ParameterType.PARAMETER_BOOL
    if isinstance(default, int):
        return ParameterType.PARAMETER_INTEGER
    if isinstance(default, float):
        return ParameterType.PARAMETER_DOUBLE
    if isinstance(default, str):
        return ParameterType.PARAMETER_STRING
    if isinstance(default, (list, tuple)) and all(isinstance(v, float) for v in default):
        return ParameterType.PARAMETER_DOUBLE_ARRAY
    raise TypeError(f"no parameter type for {default!r}")


def descriptor(spec: Spec, read_only: bool | None = None) -> ParameterDescriptor:
    """What `ros2 param describe` shows: description (+ choices, + read at start-up), type, range."""
    read_only = (not spec.live) if read_only is None else read_only
    kind = _type(spec.default)
    text = spec.description + (f"; one of: {' | '.join(repr(c) for c in spec.choices)}" if spec.choices else "")
    out = ParameterDescriptor(description=text + (READ_AT_START if read_only else ""), type=kind, read_only=read_only,
                              additional_constraints=f"one of {list(spec.choices)}" if spec.choices else "")
    if spec.low is not None and spec.high is not None:
        if kind == ParameterType.PARAMETER_INTEGER:
            out.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
        elif kind == ParameterType.PARAMETER_DOUBLE:
            out.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                           step=0.0)]
    return out


def check(spec: Spec, value: Any) -> Any:
    """`value` for `spec`, typed (an integer where a double is meant becomes a double);
    ValueError with one line naming the parameter otherwise."""
    name, default = spec.name, spec.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
    else:
        try:
            value = [float(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a list of numbers, got {value!r}") from None
    if spec.low is not None and spec.high is not None and \
            not ((value > spec.low if spec.low_open else value >= spec.low) and value <= spec.high):
        raise ValueError(f"{name} = {value!r} is outside {'(' if spec.low_open else '['}{spec.low:g}, {spec.high:g}]")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"{name} must be one of {list(spec.choices)}, got {value!r}")
    if name.endswith("_topic"):
        check_topic(name, value)
    return value


def check_topic(name: str, value: str) -> None:
    """ValueError naming parameter `name` when `value` is not a valid ROS topic name."""
    try:
        validate_topic_name(value)
    except InvalidTopicNameException:
        raise ValueError(f"{name}: {value!r} is not a valid topic name") from None


def declare(node: Node, specs: tuple[Spec, ...]) -> dict[str, Any]:
    """Declare every parameter of `specs` on `node` (statically typed, described) and return
    their values; an override of the wrong type or out of range: ValueError, one line."""
    # rclpy keeps the command-line/launch overrides here until each parameter is declared
    overrides = node._parameter_overrides
    for spec in specs:
        if spec.name in overrides:
            overrides[spec.name] = Parameter(spec.name, value=check(spec, overrides[spec.name].value))
    return {spec.name: node.declare_parameter(spec.name, spec.default, descriptor(spec)).value for spec in specs}
