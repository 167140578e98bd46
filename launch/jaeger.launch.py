"""jaeger_node alone, for any RGB-D camera + FOA stream; every input topic is an argument.

ros2 launch jaeger_ros jaeger.launch.py [namespace:=robot1] \
    color_topic:=camera/camera/color/image_raw \
    depth_topic:=camera/camera/aligned_depth_to_color/image_raw \
    camera_info_topic:=camera/camera/color/camera_info audio_topic:=audio/foa
(realsense2_camera: start it with align_depth.enable:=true so depth is in the colour frame.)
Topic names are relative: under namespace:=robot1 they resolve below /robot1.
Node arguments left empty keep the values of params_file (default: config/jaeger.yaml in the
package); `ros2 launch jaeger_ros jaeger.launch.py --show-args` lists them with their choices.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from jaeger_ros.ros.launch_args import LAUNCH_ARGUMENTS, NODE_ARGUMENTS, node_parameters, overrides


def typed(values: dict) -> dict:
    """Strings stay strings (launch would read '123' or 'true' as YAML)."""
    return {k: ParameterValue(v, value_type=str) if isinstance(v, str) else v for k, v in values.items()}


def nodes(context: LaunchContext) -> list:
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in (*LAUNCH_ARGUMENTS, *NODE_ARGUMENTS)}
    return [Node(package="jaeger_ros", executable="jaeger_node", name="jaeger_node", output="screen",
                 namespace=values["namespace"],
                 parameters=[node_parameters(values["params_file"], "jaeger_node"),
                             typed(overrides(NODE_ARGUMENTS, values))],
                 ros_arguments=["--log-level", values["log_level"]])]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("jaeger_ros")
    defaults = {"params_file": os.path.join(share, "config", "jaeger.yaml")}
    return LaunchDescription([
        *[DeclareLaunchArgument(arg.name, default_value=defaults.get(arg.name, arg.default), description=arg.description,
                                choices=list(arg.choices) or None)
          for arg in (*LAUNCH_ARGUMENTS, *NODE_ARGUMENTS)],
        OpaqueFunction(function=nodes),
    ])
