"""sim_bridge + jaeger_node (+ RViz with rviz:=true): the simulated live world and the estimator.

ros2 launch jaeger_ros sim.launch.py [params_file:=...] [method:=classical|jaeger]
    [scenario:=single|dual] [target_voice:=male|female] [rviz:=true]
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("jaeger_ros")
    params = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "sim.yaml")),
        DeclareLaunchArgument("method", default_value="classical", description="classical | jaeger"),
        DeclareLaunchArgument("checkpoint", default_value="", description="model folder for method jaeger"),
        DeclareLaunchArgument("scenario", default_value="single", description="single | dual"),
        DeclareLaunchArgument("target_voice", default_value="", description="'' | male | female"),
        DeclareLaunchArgument("rviz", default_value="false"),
        # 640x480 RGB-D over shared memory without losses (see config/fastdds.xml)
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(share, "config", "fastdds.xml")),
        Node(package="jaeger_ros", executable="sim_bridge", name="sim_bridge", output="screen",
             parameters=[params, {"scenario": LaunchConfiguration("scenario")}]),
        Node(package="jaeger_ros", executable="jaeger_node", name="jaeger_node", output="screen",
             parameters=[params, {"method": LaunchConfiguration("method"),
                                  "checkpoint": LaunchConfiguration("checkpoint"),
                                  "target_voice": LaunchConfiguration("target_voice")}]),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "config", "jaeger.rviz")],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
