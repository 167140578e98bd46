"""pip-installable view of the package (the `jaeger` CLI and the ROS-free core).

colcon builds the ROS package from CMakeLists.txt (package.xml build_type ament_cmake);
this file lets `pip install -e .` put the code and console scripts into a virtualenv.
"""
from setuptools import find_packages, setup

setup(
    name="jaeger_ros",
    version="0.1.0",
    description="JAEGER audio-visual spatial hearing for ROS 2",
    packages=find_packages(include=["jaeger_ros", "jaeger_ros.*", "sim_bridge", "sim_bridge.*"]),
    package_data={"jaeger_ros": ["core/*.json", "checkpoints/**/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/jaeger_ros"]),
        ("share/jaeger_ros", ["package.xml"]),
    ],
    python_requires=">=3.10",
    entry_points={"console_scripts": ["jaeger = jaeger_ros.cli:main"]},
)
