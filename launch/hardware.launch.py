"""jaeger_node + foa_capture (4-channel tetrahedral microphone via sounddevice/ALSA).

ros2 launch jaeger_ros hardware.launch.py device:=hw:2,0 [namespace:=robot1] [params_file:=...] [method:=jaeger]
Start the RGB-D camera driver separately (see jaeger.launch.py for its topics). The microphone's
mount goes on /tf_static as camera_link -> mic_link (`mic_mount:="x y z roll pitch yaw"`, default
aligned at the camera; mic_mount:=none when the URDF has it); set the
calibrated A->B matrix as `a_to_b_matrix` in config/hardware.yaml (or a_to_b_matrix:="[16 numbers]").
foa_capture needs sounddevice and PortAudio (see the README's hardware section).
Node arguments left empty keep the values of params_file (default: config/hardware.yaml in the package).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from jaeger_ros.ros.launch_args import CAPTURE_ARGUMENTS, LAUNCH_ARGUMENTS, NODE_ARGUMENTS, node_parameters, overrides

ARGUMENTS = (*LAUNCH_ARGUMENTS, *CAPTURE_ARGUMENTS, *NODE_ARGUMENTS)


def typed(values: dict) -> dict:
    """Strings stay strings (launch would read '123' or 'true' as YAML)."""
    return {k: ParameterValue(v, value_type=str) if isinstance(v, str) else v for k, v in values.items()}


def mic_mount(context: LaunchContext, mic_frame: str, namespace: str) -> list:
    """static_transform_publisher camera_link -> the microphone's frame from `mic_mount`
    (x y z roll pitch yaw, m and rad), or nothing for mic_mount:=none (a URDF has it)."""
    text = LaunchConfiguration("mic_mount").perform(context).strip()
    if text.lower() == "none":
        return []
    values = text.split()
    if len(values) != 6:
        raise ValueError(f"mic_mount needs 'x y z roll pitch yaw' or 'none', got {text!r}")
    names = ("--x", "--y", "--z", "--roll", "--pitch", "--yaw")
    return [Node(package="tf2_ros", executable="static_transform_publisher", name="mic_mount", output="screen",
                 namespace=namespace, arguments=[a for pair in zip(names, values) for a in pair] +
                 ["--frame-id", "camera_link", "--child-frame-id", mic_frame])]


def nodes(context: LaunchContext) -> list:
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in ARGUMENTS}
    log = ["--log-level", values["log_level"]]
    capture = node_parameters(values["params_file"], "foa_capture")
    return mic_mount(context, capture.get("frame_id", "mic_link"), values["namespace"]) + [
        Node(package="jaeger_ros", executable="foa_capture", name="foa_capture", output="screen",
             namespace=values["namespace"], ros_arguments=log,
             parameters=[capture, typed(overrides(CAPTURE_ARGUMENTS, values))]),
        Node(package="jaeger_ros", executable="jaeger_node", name="jaeger_node", output="screen",
             namespace=values["namespace"], ros_arguments=log,
             parameters=[node_parameters(values["params_file"], "jaeger_node"),
                         typed(overrides(NODE_ARGUMENTS, values))]),
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("jaeger_ros")
    defaults = {"params_file": os.path.join(share, "config", "hardware.yaml")}
    return LaunchDescription([
        *[DeclareLaunchArgument(arg.name, default_value=defaults.get(arg.name, arg.default), description=arg.description,
                                choices=list(arg.choices) or None)
          for arg in ARGUMENTS],
        DeclareLaunchArgument("mic_mount", default_value="0 0 0 0 0 0",
                              description="the microphone's place in camera_link: 'x y z roll pitch yaw' (m, rad; "
                                          "default: at the camera, aligned with it), published on /tf_static; "
                                          "'none' when the robot's URDF already has it"),
        OpaqueFunction(function=nodes),
    ])
