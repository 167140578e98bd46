"""jaeger_ros: audio-visual spatial hearing (JAEGER) for ROS 2.

The ROS-free core (geometry, audio, answers, metrics, dataset, estimators) imports without
rclpy. Generated messages (`jaeger_ros.msg`) live in the colcon install tree; extending the
package path lets the source tree and that tree form one `jaeger_ros` package.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
