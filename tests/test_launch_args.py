"""The launch arguments: one table (jaeger_ros/ros/launch_args.py) behind all three launch files.

Always: each table entry is a parameter its node really declares (real rclpy nodes), has a
description, and its launch-style value reaches the node typed; the launch files, read with
`ast`, declare every table argument with a description and give each node overrides only from
its own table. Where `launch` and `launch_ros` are installed: each file loaded with launch's
Python loader declares the same arguments and starts the right nodes (rviz:=true without rviz2
starts the others).
"""
import ast
from pathlib import Path

import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from jaeger_ros.ros import foa_capture_node
from jaeger_ros.ros.launch_args import (CAPTURE_ARGUMENTS, LAUNCH_ARGUMENTS, NODE_ARGUMENTS, SIM_ARGUMENTS, overrides,
                                        parse)

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILES = {  # file: (tables it must declare, executables it starts)
    "sim.launch.py": ({"LAUNCH_ARGUMENTS", "NODE_ARGUMENTS", "SIM_ARGUMENTS"},
                      {"sim_bridge", "jaeger_node", "jaeger_tracker", "turn_to_speaker", "rviz2"}),
    "jaeger.launch.py": ({"LAUNCH_ARGUMENTS", "NODE_ARGUMENTS"}, {"jaeger_node"}),
    "hardware.launch.py": ({"LAUNCH_ARGUMENTS", "NODE_ARGUMENTS", "CAPTURE_ARGUMENTS"},
                           {"foa_capture", "jaeger_node", "static_transform_publisher"}),
}
TABLE_OF = {"jaeger_node": "NODE_ARGUMENTS", "sim_bridge": "SIM_ARGUMENTS", "foa_capture": "CAPTURE_ARGUMENTS"}
TABLES = {"LAUNCH_ARGUMENTS": LAUNCH_ARGUMENTS, "NODE_ARGUMENTS": NODE_ARGUMENTS, "SIM_ARGUMENTS": SIM_ARGUMENTS,
          "CAPTURE_ARGUMENTS": CAPTURE_ARGUMENTS}


def test_every_table_entry_is_a_declared_parameter_with_a_description(context):
    from jaeger_ros.ros.jaeger_node import JaegerNode
    from sim_bridge.node import SimBridgeNode

    node = JaegerNode(context=context, parameter_overrides=[Parameter("autostart", value=False)])
    sim = SimBridgeNode(context=context, parameter_overrides=[Parameter("speech_pool", value=1)])
    try:
        for table, declares in ((NODE_ARGUMENTS, node.has_parameter), (SIM_ARGUMENTS, sim.has_parameter),
                                (CAPTURE_ARGUMENTS, {s.name for s in foa_capture_node.PARAMETERS}.__contains__)):
            for arg in table:
                assert declares(arg.name), f"{arg.name} is not a parameter of its node"
        for arg in (*LAUNCH_ARGUMENTS, *NODE_ARGUMENTS, *SIM_ARGUMENTS, *CAPTURE_ARGUMENTS):
            assert arg.description.strip(), arg.name
        names = [arg.name for table in TABLES.values() for arg in table]
        assert len(names) == len(set(names))
    finally:
        node.destroy_node()
        sim.destroy_node()


def test_given_arguments_reach_the_node_typed_and_empty_ones_are_no_overrides(context):
    from jaeger_ros.ros.jaeger_node import JaegerNode

    values = {arg.name: "" for arg in NODE_ARGUMENTS}
    values.update(rate_hz="7", window_s="0.25", target_voice="male", autostart="False", audio_topic="/mic/foa")
    given = overrides(NODE_ARGUMENTS, values)
    assert given == {"rate_hz": 7.0, "window_s": 0.25, "target_voice": "male", "autostart": False,
                     "audio_topic": "/mic/foa"}
    node = JaegerNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in given.items()])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert {k: node.p[k] for k in given if k != "autostart"} == {k: v for k, v in given.items() if k != "autostart"}
    finally:
        node.destroy_node()
    matrix = dict((arg.name, arg) for arg in CAPTURE_ARGUMENTS)["a_to_b_matrix"]
    assert parse(matrix, "[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]") == [float(i % 5 == 0) for i in range(16)]
    with pytest.raises(ValueError, match="rate_hz"):
        overrides(NODE_ARGUMENTS, {"rate_hz": "fast"})
    with pytest.raises(ValueError, match="autostart"):
        overrides(NODE_ARGUMENTS, {"autostart": "yes"})


def _tables_in(expr: ast.AST, assigned: dict[str, ast.AST]) -> set[str]:
    """Table names an iterable expression covers (through module-level tuples like ARGUMENTS)."""
    if isinstance(expr, ast.Name):
        if expr.id in TABLES:
            return {expr.id}
        return _tables_in(assigned[expr.id], assigned) if expr.id in assigned else set()
    if isinstance(expr, (ast.Tuple, ast.List)):
        return set().union(*(_tables_in(e.value if isinstance(e, ast.Starred) else e, assigned) for e in expr.elts))
    return set()


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


@pytest.mark.parametrize("name", sorted(LAUNCH_FILES))
def test_launch_file_declares_the_table_with_descriptions(name):
    tables, executables = LAUNCH_FILES[name]
    tree = ast.parse((REPO / "launch" / name).read_text())
    assigned = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}
    declared_tables = set()
    for call in _calls(tree, "DeclareLaunchArgument"):
        description = {k.arg: k.value for k in call.keywords}.get("description")
        assert description is not None, f"{name}:{call.lineno}: DeclareLaunchArgument without a description"
        assert not (isinstance(description, ast.Constant) and not str(description.value).strip())
        for comp in ast.walk(tree):  # declared in a comprehension over tables?
            if isinstance(comp, (ast.ListComp, ast.GeneratorExp)) and comp.elt is call:
                assert isinstance(description, ast.Attribute) and description.attr == "description"
                declared_tables |= set().union(*(_tables_in(g.iter, assigned) for g in comp.generators))
    assert tables <= declared_tables, f"{name} does not declare {tables - declared_tables}"
    started = {}
    for call in _calls(tree, "Node"):
        keywords = {k.arg: k.value for k in call.keywords}
        started[keywords["executable"].value] = call
    assert set(started) == executables
    for executable, call in started.items():  # overrides only from the node's own table
        if executable != "rviz2":  # every node of the robot follows namespace:=
            assert "namespace" in {k.arg for k in call.keywords}, f"{name}: {executable} has no namespace"
        given = {c.args[0].id for c in _calls(call, "overrides")}
        assert given <= {TABLE_OF.get(executable)}, f"{name}: {executable} gets overrides from {given}"
        if executable in TABLE_OF:
            assert given, f"{name}: {executable} gets no overrides"
    # no global Fast DDS profile from a launch file: the nodes load theirs (a user's stays theirs)
    assert not _calls(tree, "SetEnvironmentVariable"), f"{name} sets an environment variable"
    if name == "sim.launch.py":
        recorded = ast.literal_eval(assigned["RECORDED_TOPICS"])
        assert "/tf" in recorded and "/tf_static" in recorded and "/sim/transforms" not in recorded


def _launch_or_skip():
    try:
        from launch import LaunchContext, LaunchDescription  # noqa: F401 (the repo's launch/ folder is no `launch`)
        import launch_ros.actions  # noqa: F401
    except ImportError as err:
        pytest.skip(f"launch/launch_ros are not installable from a registry here ({err})")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        get_package_share_directory("jaeger_ros")
    except PackageNotFoundError:
        pytest.skip("jaeger_ros is not installed as a ROS package (no colcon install on the ament prefix path)")


@pytest.mark.parametrize("name", sorted(LAUNCH_FILES))
def test_launch_file_loads_with_launch_and_starts_the_right_nodes(name):
    _launch_or_skip()
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    from launch_ros.actions import Node

    tables, executables = LAUNCH_FILES[name]
    description = get_launch_description_from_python_launch_file(str(REPO / "launch" / name))
    arguments = {a.name: a for a in description.get_launch_arguments()}
    for table in tables:
        for arg in TABLES[table]:
            assert arg.name in arguments
    assert all(a.description.strip() and a.description != "no description given" for a in arguments.values())

    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.visit(context)
    if "rviz" in arguments:
        context.launch_configurations["rviz"] = "true"
    if "scenario" in arguments:
        context.launch_configurations["scenario"] = "party"  # every node of sim.launch.py starts
    started = set()
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            started |= {a.node_executable for a in entity.visit(context) or [] if isinstance(a, Node)}
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        executables = executables - {"rviz2"}  # rviz:=true without rviz2: the others still start
    assert started == executables


def test_one_set_of_topic_defaults_in_nodes_and_every_config(context):
    """The *_topic values of every params file are the nodes' own defaults (relative names; only
    /diagnostics global), so a file never silently re-wires a node away from the others."""
    import yaml

    from jaeger_ros.ros import jaeger_node, tracker_node, turn_to_speaker
    from sim_bridge import node as sim_node

    defaults = {"jaeger_node": {p.name: p.default for p in jaeger_node.PARAMETERS},
                "sim_bridge": {s.name: s.default for s in sim_node.PARAMETERS},
                "jaeger_tracker": {s.name: s.default for s in tracker_node.PARAMETERS},
                "turn_to_speaker": {s.name: s.default for s in turn_to_speaker.PARAMETERS},
                "foa_capture": {s.name: s.default for s in foa_capture_node.PARAMETERS}}
    for name in ("sim.yaml", "party.yaml", "jaeger.yaml", "hardware.yaml"):
        for node, section in yaml.safe_load((REPO / "config" / name).read_text()).items():
            for key, value in section["ros__parameters"].items():
                assert key in defaults[node], (name, node, key)
                if key.endswith("_topic"):
                    assert value == defaults[node][key], (name, node, key, value)
                    assert not value.startswith("/") or value == "/diagnostics", (name, node, key)


def test_node_parameters_of_a_params_file_survive_a_namespace(tmp_path):
    from jaeger_ros.ros.launch_args import node_parameters

    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    rate_hz: 5.0\n    method: classical\n"
                 "jaeger_node:\n  ros__parameters:\n    method: jaeger\n")
    assert node_parameters(str(f), "jaeger_node") == {"rate_hz": 5.0, "method": "jaeger"}
    assert node_parameters(str(f), "sim_bridge") == {"rate_hz": 5.0, "method": "classical"}


def test_choices_hold_their_defaults_and_match_the_nodes():
    from jaeger_ros.ros.jaeger_node import CHOICES
    from sim_bridge.live import SCENARIOS

    for arg in (*LAUNCH_ARGUMENTS, *NODE_ARGUMENTS, *SIM_ARGUMENTS, *CAPTURE_ARGUMENTS):
        assert not arg.choices or arg.default in arg.choices, arg.name
    by_name = {arg.name: arg for arg in (*NODE_ARGUMENTS, *SIM_ARGUMENTS)}
    assert set(by_name["method"].choices) == {"", *CHOICES["method"]}
    assert set(by_name["target_voice"].choices) == set(CHOICES["target_voice"])
    assert set(by_name["scenario"].choices) == {"", *SCENARIOS}
