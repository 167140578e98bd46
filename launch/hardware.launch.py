"""jaeger_node + foa_capture (4-channel tetrahedral microphone via sounddevice/ALSA).

ros2 launch jaeger_ros hardware.launch.py device:=hw:2,0 [params_file:=...]
Start the RGB-D camera driver separately (see jaeger.launch.py for its topics). Mount the
microphone aligned with the camera (front towards the scene, upright); set the calibrated
A->B matrix as `a_to_b_matrix` in config/hardware.yaml.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("jaeger_ros")
    params = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "hardware.yaml")),
        DeclareLaunchArgument("device", default_value="", description="sounddevice name or ALSA hw:X,Y"),
        DeclareLaunchArgument("method", default_value="classical"),
        Node(package="jaeger_ros", executable="foa_capture", name="foa_capture", output="screen",
             parameters=[params, {"device": LaunchConfiguration("device")}]),
        Node(package="jaeger_ros", executable="jaeger_node", name="jaeger_node", output="screen",
             parameters=[params, {"method": LaunchConfiguration("method")}]),
    ])
