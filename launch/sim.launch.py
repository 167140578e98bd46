"""sim_bridge + jaeger_node (+ RViz with rviz:=true): the simulated live world and the estimator.

ros2 launch jaeger_ros sim.launch.py [params_file:=...] [method:=classical|jaeger] [namespace:=robot1]
    [scenario:=single|dual|party] [world:=procedural|mesh] [talker_kind:=loudspeakers|people|mixed]
    [out_of_view:=0.3] [target_voice:=male|female] [rviz:=true] [record:=true [bag:=DIR]]

scenario:=party: talkers take turns around a robot base that turns; jaeger_tracker (world-frame
talker tracks on /jaeger/talkers) and turn_to_speaker (cmd_vel to the sim) start too, and the
default params_file is config/party.yaml (320x240 camera, tracker and behaviour parameters).
Node arguments left empty keep the values of params_file (config/sim.yaml by default).
record:=true also runs `ros2 bag record` (mcap) on the sensor, ground-truth and TF topics, for
`jaeger dataset from-bag`. Without a ROS installation, `jaeger record` writes the same bag
from the simulator directly (faster than real time). rviz:=true or record:=true where rviz2 or
`ros2 bag` is not installed: one error line, and the other nodes start as usual.
"""
import os
import shutil

import yaml

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from jaeger_ros.ros.launch_args import (LAUNCH_ARGUMENTS, NODE_ARGUMENTS, SIM_ARGUMENTS, node_parameters, overrides,
                                        parse_bool)

RECORDED_TOPICS = ["camera/color/image_raw", "camera/depth/image_raw", "camera/color/camera_info", "audio/foa",
                   "sim/ground_truth", "/tf", "/tf_static"]
"""Relative ones are recorded below the launch's namespace."""
ARGUMENTS = (*LAUNCH_ARGUMENTS, *SIM_ARGUMENTS, *NODE_ARGUMENTS)


def typed(values: dict) -> dict:
    """Strings stay strings (launch would read '123' or 'true' as YAML)."""
    return {k: ParameterValue(v, value_type=str) if isinstance(v, str) else v for k, v in values.items()}


def installed(package: str) -> bool:
    """Whether a ROS package is in the ament index (where launch_ros finds its executables)."""
    try:
        get_package_prefix(package)
        return True
    except PackageNotFoundError:
        return False


def scenario_of(values: dict, params_file: str) -> str:
    """The scenario given on the command line, else the one in params_file's sim_bridge section."""
    if values["scenario"].strip():
        return values["scenario"].strip()
    with open(params_file) as f:
        params = yaml.safe_load(f) or {}
    return str(params.get("sim_bridge", {}).get("ros__parameters", {}).get("scenario", "single"))


def nodes(context: LaunchContext, share: str) -> list:
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in ARGUMENTS}
    if not values["params_file"]:
        party = values["scenario"].strip() == "party"
        values["params_file"] = os.path.join(share, "config", "party.yaml" if party else "sim.yaml")
    log = ["--log-level", values["log_level"]]
    params, ns = values["params_file"], values["namespace"]
    actions = [
        Node(package="jaeger_ros", executable="sim_bridge", name="sim_bridge", output="screen", namespace=ns,
             parameters=[node_parameters(params, "sim_bridge"), typed(overrides(SIM_ARGUMENTS, values))],
             ros_arguments=log),
        Node(package="jaeger_ros", executable="jaeger_node", name="jaeger_node", output="screen", namespace=ns,
             parameters=[node_parameters(params, "jaeger_node"), typed(overrides(NODE_ARGUMENTS, values))],
             ros_arguments=log),
    ]
    if scenario_of(values, params) == "party":
        actions += [
            Node(package="jaeger_ros", executable="jaeger_tracker", name="jaeger_tracker", output="screen",
                 namespace=ns, parameters=[node_parameters(params, "jaeger_tracker")], ros_arguments=log),
            Node(package="jaeger_ros", executable="turn_to_speaker", name="turn_to_speaker", output="screen",
                 namespace=ns, parameters=[node_parameters(params, "turn_to_speaker")], ros_arguments=log),
        ]
    if parse_bool("rviz", LaunchConfiguration("rviz").perform(context)):
        if installed("rviz2"):
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                                arguments=["-d", os.path.join(share, "config", "jaeger.rviz")]))
        else:
            get_logger("sim.launch").error("rviz:=true but rviz2 is not installed: starting without RViz")
    if parse_bool("record", LaunchConfiguration("record").perform(context)):
        if shutil.which("ros2") and installed("ros2bag"):
            actions.append(ExecuteProcess(cmd=["ros2", "bag", "record", "-s", "mcap", "-o",
                                               LaunchConfiguration("bag").perform(context),
                                               *[t if t.startswith("/") else f"{'/' + ns if ns else ''}/{t}"
                                                 for t in RECORDED_TOPICS]],
                                          output="screen"))
        else:
            get_logger("sim.launch").error("record:=true but `ros2 bag` is not installed: not recording "
                                           "(`jaeger record` writes the same bag without ROS)")
    return actions


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("jaeger_ros")
    defaults = {"params_file": ""}  # "": config/sim.yaml, or config/party.yaml for scenario:=party
    return LaunchDescription([
        *[DeclareLaunchArgument(arg.name, default_value=defaults.get(arg.name, arg.default), description=arg.description,
                                choices=list(arg.choices) or None)
          for arg in ARGUMENTS],
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz with config/jaeger.rviz",
                              choices=["true", "false"]),
        DeclareLaunchArgument("record", default_value="false", description="also record a rosbag2 (mcap)",
                              choices=["true", "false"]),
        DeclareLaunchArgument("bag", default_value="jaeger_sim_bag", description="bag folder for record:=true"),
        # no global Fast DDS profile here: each node process loads config/fastdds.xml itself unless
        # the user set their own (jaeger_ros/ros/runner.py), so `ros2 run` holds the rate too
        OpaqueFunction(function=nodes, args=[share]),
    ])
