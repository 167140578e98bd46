"""Every dependency key in package.xml resolves for `rosdep install --from-paths src --ignore-src`.

rosdep needs each key to be either a ROS package of the distribution or a key of rosdep's
database; one unknown key fails the whole install. rosdep itself cannot run here (no network to
its sources), so the keys are compared with lists checked by hand in ros/rosdistro at commit
8468e88ccd523427f9131e39d2af0938f1c298b2 (2026-08-22):
- ROS_PACKAGES: names under `packages:` (or repository names) in kilted/distribution.yaml;
- SYSTEM_KEYS: top-level keys of rosdep/base.yaml and rosdep/python.yaml, with the Debian
  package each gives noted beside it.
A key added to package.xml must be checked there first and then added here.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ROS_PACKAGES = {
    "ament_cmake", "ament_cmake_python", "ament_cmake_test", "ament_index_python", "builtin_interfaces",
    "diagnostic_msgs", "geometry_msgs", "launch", "launch_ros", "lifecycle_msgs", "rclpy",
    "rosidl_default_generators", "rosidl_default_runtime", "sensor_msgs", "std_msgs", "tf2_msgs",
    "visualization_msgs", "vision_msgs",
}
SYSTEM_KEYS = {
    # rosdep/python.yaml
    "python3-numpy": "python3-numpy", "python3-scipy": "python3-scipy", "python3-yaml": "python3-yaml",
    "python3-pil": "python3-pil", "python3-matplotlib": "python3-matplotlib", "python3-tqdm": "python3-tqdm",
    "python3-soundfile": "python3-soundfile", "python3-sounddevice-pip": "pip: sounddevice",
    "python3-pytest": "python3-pytest",
    # rosdep/base.yaml
    "festival": "festival, festvox-kallpc16k", "flite": "flite", "sox": "sox",
    "portaudio19-dev": "portaudio19-dev (depends on libportaudio2)",
}
# Keys package.xml once named that rosdep's database does not have (it fails on them).
MISSING_KEYS = {"espeak-ng", "libportaudio2", "festvox-us-slt-hts", "festvox-kallpc16k"}
DEPENDENCY_TAGS = ("depend", "build_depend", "build_export_depend", "buildtool_depend", "exec_depend",
                   "test_depend", "buildtool_export_depend", "doc_depend")


def _keys() -> list[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return [element.text.strip() for tag in DEPENDENCY_TAGS for element in root.findall(tag)]


def test_package_xml_has_dependencies() -> None:
    keys = _keys()
    assert "rclpy" in keys and "python3-numpy" in keys and len(keys) == len(set(keys)), keys


def test_every_key_is_a_ros_package_or_a_rosdep_key() -> None:
    unknown = [key for key in _keys() if key not in ROS_PACKAGES and key not in SYSTEM_KEYS]
    assert not unknown, f"not checked against rosdistro (see the module docstring): {unknown}"


def test_no_key_rosdep_lacks() -> None:
    assert not MISSING_KEYS & set(_keys())
    assert not MISSING_KEYS & (ROS_PACKAGES | set(SYSTEM_KEYS))


def test_the_apt_line_covers_what_rosdep_cannot() -> None:
    """The speech packages without a key are named for apt in the README's workspace section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Building in a ROS 2 workspace", 1)[1].split("\n## ", 1)[0]
    assert "sudo apt install espeak-ng festvox-us-slt-hts" in section
