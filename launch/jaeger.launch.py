"""jaeger_node alone, for any RGB-D camera + FOA stream; every input topic is an argument.

ros2 launch jaeger_ros jaeger.launch.py \
    color_topic:=/camera/camera/color/image_raw \
    depth_topic:=/camera/camera/aligned_depth_to_color/image_raw \
    camera_info_topic:=/camera/camera/color/camera_info audio_topic:=/audio/foa
(realsense2_camera: start it with align_depth.enable:=true so depth is in the colour frame.)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

TOPICS = {"color_topic": "/camera/camera/color/image_raw",
          "depth_topic": "/camera/camera/aligned_depth_to_color/image_raw",
          "camera_info_topic": "/camera/camera/color/camera_info",
          "audio_topic": "/audio/foa"}


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("jaeger_ros")
    args = [DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "jaeger.yaml")),
            DeclareLaunchArgument("method", default_value="classical"),
            DeclareLaunchArgument("checkpoint", default_value=""),
            DeclareLaunchArgument("target_voice", default_value="")]
    args += [DeclareLaunchArgument(name, default_value=default) for name, default in TOPICS.items()]
    overrides = {name: LaunchConfiguration(name) for name in ("method", "checkpoint", "target_voice", *TOPICS)}
    return LaunchDescription([
        *args,
        Node(package="jaeger_ros", executable="jaeger_node", name="jaeger_node", output="screen",
             parameters=[LaunchConfiguration("params_file"), overrides]),
    ])
