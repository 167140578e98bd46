"""sim_bridge + jaeger_node (+ RViz with rviz:=true): the simulated live world and the estimator.

ros2 launch jaeger_ros sim.launch.py [params_file:=...] [method:=classical|jaeger]
    [scenario:=single|dual] [target_voice:=male|female] [rviz:=true] [record:=true [bag:=DIR]]

record:=true also runs `ros2 bag record` (mcap) on the sensor, ground-truth and TF topics, for
`jaeger dataset from-bag`. Without a ROS installation, `jaeger record` writes the same bag
from the simulator directly (faster than real time).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


RECORDED_TOPICS = ["/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info", "/audio/foa",
                   "/sim/ground_truth", "/tf", "/tf_static", "/sim/transforms"]


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
        DeclareLaunchArgument("record", default_value="false", description="also record a rosbag2 (mcap)"),
        DeclareLaunchArgument("bag", default_value="jaeger_sim_bag", description="bag folder for record:=true"),
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
        ExecuteProcess(cmd=["ros2", "bag", "record", "-s", "mcap", "-o", LaunchConfiguration("bag"), *RECORDED_TOPICS],
                       output="screen", condition=IfCondition(LaunchConfiguration("record"))),
    ])
