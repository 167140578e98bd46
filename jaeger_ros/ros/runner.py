"""The one `main()` every node executable shares: init, spin, clean shutdown on Ctrl-C."""
from __future__ import annotations

import sys
from typing import Callable

import rclpy
import rclpy.executors
from rclpy.node import Node


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> None:
    rclpy.init(args=args if args is not None else sys.argv)
    node = factory()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except RuntimeError:
        # SIGINT shuts the context down while a timer callback may still be publishing
        # ("publisher's context is invalid"): that is the shutdown, not a failure.
        if rclpy.ok():
            raise
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
