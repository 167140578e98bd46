"""The one `main()` every node executable shares: init, spin, and a clean exit on Ctrl-C/SIGTERM.

Why not rclpy's own signal handlers: they shut the context down from inside the signal, so a
callback that is publishing at that moment fails ("publisher's context is invalid") and a
lifecycle node can no longer take its shutdown transition. Here SIGINT and SIGTERM only set a
flag once the node spins (an exception raised from a signal handler inside rclpy's C code
surfaces as an unrelated RuntimeError), and the executor wakes at least every `POLL_S` to look
at it; during start-up, before any rclpy call is in flight, they raise KeyboardInterrupt so a
slow constructor is cut short. The node is then shut down in order (a lifecycle node through
its shutdown transition, so it releases what it holds), and the process exits 0. A second
signal during that clean-up is ignored.

Transport: unless the user set their own Fast DDS profile, the process loads the package's
config/fastdds.xml (large_data_profile), so the RGB-D rate holds with a plain `ros2 run`.
Threads: unless the user set a thread count, the process uses one BLAS and one OpenMP thread
(core.threads.one_thread_per_library: on 2 shared cores more only lengthen the latency tail).

A node that cannot start (missing dependency, bad parameter) raises `NodeStartError`,
ValueError or a parameter exception from its constructor: one line on stderr, exit status 1.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from jaeger_ros.core.threads import one_thread_per_library

POLL_S = 0.1
"""Longest time the executor waits before a pending signal is acted on."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class NodeStartError(RuntimeError):
    """A node cannot start; the message is the one line the user sees."""


class _StopFlag:
    """Set by SIGINT/SIGTERM; raises only while the node is being constructed."""

    def __init__(self) -> None:
        self.stopped = False
        self.spinning = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:  # the first signal stops the node; later ones must not break the clean-up
            signal.signal(sig, signal.SIG_IGN)
        self.stopped = True
        if not self.spinning:
            raise KeyboardInterrupt(signal.Signals(signum).name)


def _shut_down(node: Node) -> None:
    """Release the node: a lifecycle node takes its shutdown transition (releasing its
    resources in on_shutdown) unless it is mid-transition or already finalized."""
    if isinstance(node, LifecycleNode):
        try:
            node.trigger_shutdown()
        except _rclpy.RCLError as err:  # mid-transition (interrupted) or already finalized
            node.get_logger().debug(f"no shutdown transition: {err}")
    node.destroy_node()


PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
PROFILE_FILES = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
"""How a user gives Fast DDS a profile: a variable, or one of these files in the working directory."""


def large_data_profile() -> Path | None:
    """The package's Fast DDS profile (config/fastdds.xml: a shared-memory segment large enough
    for whole RGB-D frames) for this process, unless the user gave their own (a profile variable
    or file) or another middleware is chosen. Why per process: `ros2 run` and every launch file
    then hold the frame rate without a global variable, and a user's profile is never replaced.
    Returns the profile set, or None."""
    if any(os.environ.get(v) for v in PROFILE_VARIABLES) or any(Path(f).exists() for f in PROFILE_FILES):
        return None
    if not os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps"):
        return None
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory("jaeger_ros"))
    except (ImportError, LookupError, OSError):  # not installed / no AMENT_PREFIX_PATH: the source tree
        share = Path(__file__).resolve().parents[2]
    profile = share / "config" / "fastdds.xml"
    if not profile.is_file():
        return None
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)  # read when the participant is created
    return profile


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> None:
    """Create the node from `factory` and spin it until SIGINT/SIGTERM (then return, exit 0)
    or until it cannot start (then SystemExit(1) after one line on stderr)."""
    large_data_profile()
    one_thread_per_library()
    flag = _StopFlag()
    previous = {sig: signal.signal(sig, flag) for sig in STOP_SIGNALS}
    node: Node | None = None
    try:
        rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = factory()
        except NodeStartError as err:
            print(" ".join(str(err).split()), file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        except (ValueError, ParameterException) as err:  # a bad parameter value
            print("cannot start: " + " ".join(str(err).split()), file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        # from here a signal only sets the flag: raising inside the executor's constructor would
        # leave a half-built executor whose __del__ prints a traceback at exit
        flag.spinning = True
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not flag.stopped:
            executor.spin_once(timeout_sec=POLL_S)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if node is not None:
            _shut_down(node)
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
