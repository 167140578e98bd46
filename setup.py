"""pip-installable view of the package: the `jaeger` CLI and the ROS-free stages.

colcon builds the ROS package from CMakeLists.txt (package.xml build_type ament_cmake) and
ignores this file; `pip install '.[hardware]'` serves users without a ROS workspace (the
generated messages then come from a sourced ROS workspace that has jaeger_ros built).
"""
from glob import glob

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
        *[(f"share/jaeger_ros/{d}", sorted(glob(f"{d}/*"))) for d in ("config", "launch", "msg")],
    ],
    python_requires=">=3.10",
    # foa_capture: a 4-channel microphone through PortAudio (apt: libportaudio2)
    extras_require={"hardware": ["sounddevice>=0.4"]},
    entry_points={"console_scripts": ["jaeger = jaeger_ros.cli:main"]},
)
