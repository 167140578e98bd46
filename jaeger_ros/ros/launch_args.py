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

import yaml

def keep(default: str) -> str:
    """How an empty node argument reads, with the default it then has (shown by --show-args)."""
    return f" (empty: the value in params_file; the nodes' default: {default})"


class Arg(NamedTuple):
    """(name, default, description) of one launch argument, and how a value becomes a parameter;
    `choices` are checked by launch before any node starts ('' = keep params_file's value)."""

    name: str
    default: str
    description: str
    kind: str = "str"  # str | float | bool | floats
    choices: tuple[str, ...] = ()


NODE_ARGUMENTS: tuple[Arg, ...] = (
    Arg("method", "", "estimator: classical | jaeger" + keep("classical"), choices=("", "classical", "jaeger")),
    Arg("checkpoint", "", "method jaeger: model folder" + keep("'' = the packaged tiny checkpoint")),
    Arg("candidates", "", "method classical: candidate boxes: depth (every depth blob) | classified (blobs the "
        "loudspeaker classifier keeps) | detectors (people + classified loudspeakers)" + keep("classified"),
        choices=("", "depth", "classified", "detectors")),
    Arg("target_voice", "", "voice to locate: male | female" + keep("'' = single source"),
        choices=("", "male", "female")),
    Arg("rate_hz", "", "most outputs per second, 0 < rate_hz <= 200" + keep("10.0"), "float"),
    Arg("window_s", "", "seconds of audio ending at each image stamp" + keep("0.5"), "float"),
    Arg("autostart", "", "true: configure and activate at start; false: wait for `ros2 lifecycle set`" + keep("true"),
        "bool", choices=("", "true", "false")),
    Arg("color_topic", "", "colour image topic (relative names follow namespace)" + keep("camera/color/image_raw")),
    Arg("depth_topic", "", "depth image topic, aligned to colour" + keep("camera/depth/image_raw")),
    Arg("camera_info_topic", "", "colour camera_info topic" + keep("camera/color/camera_info")),
    Arg("audio_topic", "", "FOA audio topic (jaeger_ros/FoaAudio)" + keep("audio/foa")),
)
"""Each one is the jaeger_node parameter of the same name."""

LAUNCH_ARGUMENTS: tuple[Arg, ...] = (
    Arg("params_file", "", "YAML parameter file of the nodes, keyed by node name; empty: the package's "
        "config/sim.yaml (config/party.yaml for scenario:=party) in sim.launch.py, config/jaeger.yaml in "
        "jaeger.launch.py, config/hardware.yaml in hardware.launch.py"),
    Arg("namespace", "", "namespace of every node: topics are relative, so namespace:=robot1 gives "
        "/robot1/camera/color/image_raw, /robot1/jaeger/speaker_match, ... (/tf, /tf_static and /diagnostics stay "
        "global)"),
    Arg("log_level", "info", "ROS log level of the nodes", choices=("debug", "info", "warn", "error")),
)
"""Arguments of the launch itself (not parameters); each launch file sets its own params_file."""

SIM_ARGUMENTS: tuple[Arg, ...] = (
    Arg("scenario", "", "single: one loudspeaker talks; dual: a male and a female voice overlap; party: talkers take "
        "turns around a turning robot (+ jaeger_tracker and turn_to_speaker)" + keep("single"),
        choices=("", "single", "dual", "party")),
    Arg("world", "", "procedural: shoebox rooms; mesh: furnished mesh rooms from the catalogue (single and dual "
        "only)" + keep("procedural"), choices=("", "procedural", "mesh")),
    Arg("talker_kind", "", "who talks: loudspeakers | people (every source a person talking from its mouth) | "
        "mixed (single and dual only)" + keep("loudspeakers"), choices=("", "loudspeakers", "people", "mixed")),
    Arg("out_of_view", "", "share of scenes (0-1) where the robot looks away from the talkers, who are then beside "
        "or behind it (single and dual only)" + keep("0.0"), "float"),
)
"""sim.launch.py: each one is the sim_bridge parameter of the same name."""

CAPTURE_ARGUMENTS: tuple[Arg, ...] = (
    Arg("device", "", "input device: a sounddevice name or ALSA hw:X,Y" + keep("'' = the default input")),
    Arg("a_to_b_matrix", "", "16 numbers, row-major 4x4 A->B matrix (rows W, Y, Z, X)" + keep("ideal tetrahedron"),
        "floats"),
)
"""hardware.launch.py: each one is the foa_capture parameter of the same name."""


def node_parameters(params_file: str, node: str) -> dict[str, Any]:
    """The `node` section of a params file as a plain dict (its `ros__parameters`, after any
    `/**` section). Why not the file itself: a params file keyed `jaeger_node:` matches only
    /jaeger_node, so under namespace:=robot1 the node would silently get none of it; launch_ros
    writes a dict for the node's full name."""
    with open(params_file) as f:
        sections = yaml.safe_load(f) or {}
    out: dict[str, Any] = {}
    for key in ("/**", f"/**/{node}", node, f"/{node}"):
        out.update((sections.get(key) or {}).get("ros__parameters", {}))
    return out


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
