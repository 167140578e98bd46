"""The launch arguments of sim.launch.py, jaeger.launch.py and hardware.launch.py, as plain data.

No `launch` import here: the launch files build their DeclareLaunchArgument lists from these
tables, and tests check the tables against the parameters the nodes really declare without
needing `launch` installed.

Every node argument defaults to empty, which keeps the value from `params_file`; a value given
on the command line becomes a parameter override of the node the table belongs to, typed
(`rate_hz:=10` is the float 10.0), so the YAML file stays the one place with the defaults.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple

KEEP = " (empty: the value in params_file)"


class Arg(NamedTuple):
    """(name, default, description) of one launch argument, and how a value becomes a parameter."""

    name: str
    default: str
    description: str
    kind: str = "str"  # str | float | bool | floats


NODE_ARGUMENTS: tuple[Arg, ...] = (
    Arg("method", "", "estimator: classical | jaeger" + KEEP),
    Arg("checkpoint", "", "method jaeger: model folder; '' in params_file = the packaged tiny checkpoint" + KEEP),
    Arg("target_voice", "", "voice to locate: male | female; '' in params_file = single source" + KEEP),
    Arg("rate_hz", "", "most outputs per second, 0 < rate_hz <= 200" + KEEP, "float"),
    Arg("window_s", "", "seconds of audio ending at each image stamp" + KEEP, "float"),
    Arg("autostart", "", "true: configure and activate at start; false: wait for `ros2 lifecycle set`" + KEEP,
        "bool"),
    Arg("color_topic", "", "colour image topic" + KEEP),
    Arg("depth_topic", "", "depth image topic, aligned to colour" + KEEP),
    Arg("camera_info_topic", "", "colour camera_info topic" + KEEP),
    Arg("audio_topic", "", "FOA audio topic (jaeger_ros/FoaAudio)" + KEEP),
)
"""Each one is the jaeger_node parameter of the same name."""

LAUNCH_ARGUMENTS: tuple[Arg, ...] = (
    Arg("params_file", "", "YAML parameter file of the nodes (default: this launch file's config in the package; "
        "sim.launch.py: config/party.yaml for scenario:=party)"),
    Arg("log_level", "info", "ROS log level of the nodes: debug | info | warn | error"),
)
"""Arguments of the launch itself (not parameters); each launch file sets its own params_file."""

SIM_ARGUMENTS: tuple[Arg, ...] = (
    Arg("scenario", "", "single: one loudspeaker talks; dual: a male and a female voice overlap; party: talkers take "
        "turns around a turning robot (+ jaeger_tracker and turn_to_speaker)" + KEEP),
)
"""sim.launch.py: each one is the sim_bridge parameter of the same name."""

CAPTURE_ARGUMENTS: tuple[Arg, ...] = (
    Arg("device", "", "input device: a sounddevice name or ALSA hw:X,Y" + KEEP),
    Arg("a_to_b_matrix", "", "16 numbers, row-major 4x4 A->B matrix (rows W, Y, Z, X)" + KEEP, "floats"),
)
"""hardware.launch.py: each one is the foa_capture parameter of the same name."""


def parse_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {text!r}")
    return value == "true"


def parse(arg: Arg, text: str) -> Any:
    """A launch argument's text as the parameter value its node expects."""
    try:
        if arg.kind == "float":
            return float(text)
        if arg.kind == "floats":
            return [float(v) for v in re.split(r"[\s,]+", text.strip().strip("[]").strip()) if v]
    except ValueError:
        raise ValueError(f"launch argument {arg.name} needs {'a number' if arg.kind == 'float' else 'numbers'}, "
                         f"got {text!r}") from None
    if arg.kind == "bool":
        return parse_bool(arg.name, text)
    return text


def overrides(table: tuple[Arg, ...], values: Mapping[str, str]) -> dict[str, Any]:
    """Parameter overrides for the arguments of `table` that were given (non-empty), typed."""
    return {arg.name: parse(arg, values[arg.name]) for arg in table if values.get(arg.name, "").strip()}
