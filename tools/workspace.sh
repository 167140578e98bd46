#!/usr/bin/env bash
# Build this package the way a ROS user does: a colcon workspace with src/jaeger_ros, built in
# full (messages, Python package, launch, config, executables, ament index), merged install.
#   tools/workspace.sh WS_DIR [PYTHON]
# The package is copied into WS_DIR/src/jaeger_ros: CMake refuses a source folder that holds
# the build's own Python prefix (.venv). When tf2_msgs cannot be imported (no ROS installation,
# only the PyPI wheels), that one standard interface is built from its message definition
# in the same workspace; a ROS installation's own tf2_msgs takes precedence.
set -euo pipefail
ws=$(realpath -m "${1:?usage: tools/workspace.sh WS_DIR [PYTHON]}")
py=${2:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=$("$py" -c 'import sys; print(sys.prefix)')
pyexe=$("$py" -c 'import sys; print(sys.executable)')
export PATH="$prefix/bin:$PATH"   # colcon and the ROS wheels' tools live beside the interpreter

# The ROS wheels' exported CMake targets name their build machine's Python paths; point them here.
inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np=$("$py" -c 'import numpy, os; print(os.path.dirname(numpy.__file__))')
mkdir -p /opt/python/cp311-cp311/include /opt/python/cp311-cp311/lib/python3.11/site-packages
ln -sfn "$inc" /opt/python/cp311-cp311/include/python3.11
ln -sfn "$np" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy

mkdir -p "$ws/src"
rm -rf "$ws/src/jaeger_ros" && mkdir -p "$ws/src/jaeger_ros"
for item in package.xml CMakeLists.txt setup.py msg jaeger_ros sim_bridge launch config scripts resource; do
  cp -a "$repo/$item" "$ws/src/jaeger_ros/"
done
find "$ws/src/jaeger_ros" -name __pycache__ -prune -exec rm -rf {} +

if ! "$py" -c 'import tf2_msgs.msg' 2>/dev/null && [ ! -f "$ws/src/tf2_msgs/package.xml" ]; then
  mkdir -p "$ws/src/tf2_msgs/msg"
  echo 'geometry_msgs/TransformStamped[] transforms' > "$ws/src/tf2_msgs/msg/TFMessage.msg"
  cat > "$ws/src/tf2_msgs/package.xml" <<'XML'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.0.0</version>
  <description>tf2_msgs/TFMessage only, built from its message definition where ROS does not provide it.</description>
  <maintainer email="maintainers@jaeger-ros.dev">jaeger_ros maintainers</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
  cat > "$ws/src/tf2_msgs/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
CMAKE
fi

cd "$ws"
AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$prefix" CMAKE_PREFIX_PATH="${CMAKE_PREFIX_PATH:+$CMAKE_PREFIX_PATH:}$prefix" \
  colcon build --merge-install --event-handlers console_direct- \
  --cmake-args -DPython3_EXECUTABLE="$pyexe" -DBUILD_TESTING=OFF
