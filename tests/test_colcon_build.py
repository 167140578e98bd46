"""The package built the way a ROS user builds it: `colcon build` in a fresh workspace.

One full build (messages, Python package, launch, config, executables, ament index) into a
temporary workspace with `src/jaeger_ros`, then checks on the install tree alone: what is
installed where, that the generated messages and our modules import from that prefix, and that
the executables under lib/jaeger_ros start and stop as `ros2 run` would run them (`ros2` itself
is not installable here, so the test runs the same files with the sourced environment).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ITEMS = ("package.xml", "CMakeLists.txt", "setup.py", "msg", "jaeger_ros", "sim_bridge", "launch",
                 "config", "scripts", "resource")
EXECUTABLES = ("jaeger_node", "sim_bridge", "foa_capture", "live_demo", "jaeger")

@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """colcon build of a fresh copy of the package; returns the install prefix."""
    ws = tmp_path_factory.mktemp("ws")
    src = ws / "src" / "jaeger_ros"
    src.mkdir(parents=True)
    for item in PACKAGE_ITEMS:
        path = REPO / item
        if path.is_dir():
            shutil.copytree(path, src / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / item)
    prefix = Path(sys.prefix)
    env = dict(os.environ)
    for var in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):  # the sourced environment + the ROS wheels
        env[var] = os.pathsep.join(p for p in (env.get(var, ""), str(prefix)) if p)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env['PATH']}"
    start = time.monotonic()
    build = subprocess.run(
        [str(prefix / "bin" / "colcon"), "build", "--merge-install", "--packages-select", "jaeger_ros",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
         f"-DCMAKE_PROJECT_INCLUDE={REPO / 'cmake' / 'ros_wheels_python.cmake'}"],  # the wheels' Python paths
        cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(f"colcon build of jaeger_ros: {time.monotonic() - start:.0f} s")
    return ws / "install"


def sourced_env(install: Path) -> dict[str, str]:
    """The environment after `source install/setup.bash` (read from a real bash)."""
    out = subprocess.run(["bash", "-c", f"source {install}/setup.bash && env -0"], capture_output=True,
                         check=True).stdout.decode()
    env = dict(line.split("=", 1) for line in out.split("\0") if "=" in line)
    env["ROS_DOMAIN_ID"] = str(random.randint(1, 200))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return env


def test_install_tree_has_the_ros_package_layout(install: Path) -> None:
    share = install / "share" / "jaeger_ros"
    index = install / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / "jaeger_ros").is_file()
    interfaces = (index / "rosidl_interfaces" / "jaeger_ros").read_text().split()
    assert "msg/FoaAudio.msg" in interfaces and "msg/SpeakerMatch.msg" in interfaces
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    for folder in ("launch", "config", "msg"):
        installed = sorted(p.name for p in (share / folder).iterdir())
        source = sorted(p.name for p in (REPO / folder).iterdir())
        assert set(source) <= set(installed), f"share/jaeger_ros/{folder}: {installed} lacks some of {source}"
    for name in EXECUTABLES:
        exe = install / "lib" / "jaeger_ros" / name
        assert exe.is_file() and os.access(exe, os.X_OK), exe
    assert os.access(install / "bin" / "jaeger", os.X_OK)


def test_messages_and_modules_import_from_the_install_prefix(install: Path) -> None:
    code = ("import jaeger_ros.msg as m, jaeger_ros.core.geometry as g, sim_bridge.live as s; "
            "m.FoaAudio(channels=4); m.SpeakerMatch(label='Left'); "
            "print(m.__file__); print(g.__file__); print(s.__file__)")
    run = subprocess.run([sys.executable, "-c", code], env=sourced_env(install), cwd=install,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for path in run.stdout.split():
        assert Path(path).resolve().is_relative_to(install.resolve()), path


def test_cli_runs_from_the_install(install: Path) -> None:
    env = sourced_env(install)
    for command in ([str(install / "bin" / "jaeger"), "--help"], ["jaeger", "dataset", "generate", "--help"],
                    [str(install / "lib" / "jaeger_ros" / "live_demo"), "--help"]):
        run = subprocess.run(command, env=env, cwd=install, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (command, run.stderr)
        assert "usage" in run.stdout.lower()


def test_cli_generates_with_worker_processes_from_the_install(install: Path, tmp_path: Path) -> None:
    """Worker processes re-import the installed `jaeger` script: it must not run again in them."""
    run = subprocess.run(["jaeger", "dataset", "generate", "--out", str(tmp_path / "d"), "--split", "test",
                          "--num", "2", "--seed", "0", "--tasks", "A", "--workers", "2", "--resolution", "224x126", "--world", "procedural"],
                         env=sourced_env(install), cwd=install, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(list((tmp_path / "d" / "test").glob("task1_*"))) == 2


def _start_and_interrupt(install: Path, name: str, args: list[str], ready: str) -> tuple[int, str]:
    """Start lib/jaeger_ros/<name> as `ros2 run` does, wait for `ready` in its log, send SIGINT."""
    log = install.parent / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(install / "lib" / "jaeger_ros" / name), *args], env=sourced_env(install),
                                cwd=install.parent, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while ready not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log.read_text()
        assert proc.poll() is None, f"{name} exited early ({proc.returncode}):\n{text[-2000:]}"
        assert ready in text, f"{name} did not log {ready!r} within 60 s:\n{text[-2000:]}"
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    return code, log.read_text()


@pytest.mark.parametrize("name, args, ready", [
    ("jaeger_node", ["--ros-args", "-p", "method:=classical"], "active"),
    ("sim_bridge", ["--ros-args", "-p", "scenario:=single"], "sim_bridge"),
])
def test_node_executables_start_and_stop_cleanly(install: Path, name: str, args: list[str], ready: str) -> None:
    code, text = _start_and_interrupt(install, name, args, ready)
    assert code == 0, text[-2000:]
    assert "Traceback" not in text, text[-2000:]


def test_foa_capture_without_its_hardware_dependency_says_what_to_install(install: Path) -> None:
    env = sourced_env(install)
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], env=env, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("sounddevice is installed here: the missing-dependency path cannot be exercised")
    run = subprocess.run([str(install / "lib" / "jaeger_ros" / "foa_capture")], env=env, cwd=install.parent,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "Traceback" not in run.stdout + run.stderr
    assert "sounddevice" in run.stdout + run.stderr
