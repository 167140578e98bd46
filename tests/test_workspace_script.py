"""tools/workspace.sh run the way the README lays a workspace out: from a clone in <ws>/src/jaeger_ros.

The clone must come out untouched (its .git, its history and a user's uncommitted file), the
script must not need root, and the install must hold the generated messages. As root the script
runs under an unused uid (setpriv) in a private mount namespace (unshare) where the global
/opt/python/cp311-cp311 links of older versions of the script are hidden, so the build can only
succeed through cmake/ros_wheels_python.cmake. The namespace also shows the interpreter's folder
when it sits under a home the uid may not enter (this machine's pyenv in /root): on a normal
machine the interpreter is world-readable; nothing else of the machine changes.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path("tools") / "workspace.sh"
UID = 54321  # no passwd entry: a plain unprivileged user, nothing added to /etc/passwd
SENTINEL = "MY_UNCOMMITTED_NOTES.txt"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def _clone_of_working_tree(dest: Path) -> None:
    """git clone of HEAD, then the working tree's tracked and untracked (not ignored) files committed
    on top, so what is tested is the code as it is now, in a clean clone."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True)
    for name in _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        source = REPO / name
        if name and source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
        elif name and not source.exists():  # deleted in the working tree
            (dest / name).unlink(missing_ok=True)
    _git(dest, "add", "-A")
    _git(dest, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty", "-m", "working tree")


def _hidden_ancestor(path: Path) -> Path | None:
    """The deepest folder above `path` that others may not enter (None when all are enterable)."""
    hidden = None
    for parent in reversed(path.parents):
        if not os.stat(parent).st_mode & 0o001:
            hidden = parent
    return hidden


def _as_unprivileged_user(command: list[str], home: Path) -> list[str]:
    """`command` as UID in a private mount namespace (see the module docstring); [] when impossible."""
    if os.geteuid() != 0:
        return command  # already unprivileged
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return []
    probe = ["unshare", "--mount", "--propagation", "private", "--", "setpriv", f"--reuid={UID}", f"--regid={UID}",
             "--clear-groups", "true"]
    if subprocess.run(probe, capture_output=True).returncode != 0:  # e.g. a container without CAP_SYS_ADMIN
        return []
    steps = []
    if Path("/opt/python/cp311-cp311").exists():
        steps.append("mount -t tmpfs -o mode=755 none /opt/python")
    base = Path(sys.base_prefix).resolve()
    hidden = _hidden_ancestor(base)
    if hidden is not None:
        child = hidden / base.relative_to(hidden).parts[0]
        if _hidden_ancestor(child / "x") != hidden:
            return []
        keep = home / "interpreter"
        keep.mkdir(exist_ok=True)
        steps += [f"mount --bind {child} {keep}", f"mount -t tmpfs -o mode=755 none {hidden}",
                  f"mkdir -p {child}", f"mount --bind {keep} {child}"]
    user = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--no-new-privs",
            "env", "-i", f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", *command]
    script = " && ".join([*steps, 'exec "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *user]


@pytest.fixture(scope="module")
def workspace() -> Iterator[tuple[Path, subprocess.CompletedProcess]]:
    """A workspace with the clone in src/jaeger_ros, after tools/workspace.sh ran there."""
    root = Path(tempfile.mkdtemp(prefix="jaeger_ws_"))
    try:
        ws, clone, home = root / "ws", root / "ws" / "src" / "jaeger_ros", root / "home"
        clone.parent.mkdir(parents=True)
        home.mkdir()
        _clone_of_working_tree(clone)
        (clone / SENTINEL).write_text("work in progress\n")
        command = _as_unprivileged_user(["bash", str(clone / SCRIPT), str(ws), sys.executable], home)
        if not command:
            pytest.skip("running as root where unshare/setpriv are missing or not permitted: "
                        "cannot run the script as an unprivileged user")
        if os.geteuid() == 0:
            os.chmod(root, 0o755)
            for path in (root, *root.rglob("*")):
                os.lchown(path, UID, UID)
        run = subprocess.run(command, cwd=clone, capture_output=True, text=True, timeout=1200)
        yield ws, run
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_script_builds_as_unprivileged_user_and_leaves_the_clone_intact(workspace) -> None:
    ws, run = workspace
    clone = ws / "src" / "jaeger_ros"
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (clone / ".git").is_dir()
    assert _git(clone, "log", "-1", "--format=%s").strip() == "working tree"
    assert _git(clone, "status", "--porcelain").splitlines() == [f"?? {SENTINEL}"]
    assert (clone / SENTINEL).read_text() == "work in progress\n"
    assert not (ws / "src" / "jaeger_ros" / ".jaeger_ros_workspace_copy").exists()  # built in place, no copy


def test_messages_import_from_the_install_prefix(workspace) -> None:
    ws, run = workspace
    assert run.returncode == 0, run.stderr[-3000:]
    install = ws / "install"
    code = "import jaeger_ros.msg as m; m.FoaAudio(channels=4); print(m.__file__)"
    probe = subprocess.run(["bash", "-c", f'source "{install}/setup.bash" && "{sys.executable}" -c "{code}"'],
                           cwd=ws, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert Path(probe.stdout.strip()).resolve().is_relative_to(install.resolve())


def test_colcon_test_runs_the_pytest_suite(workspace) -> None:
    """`colcon test --packages-select jaeger_ros` in that workspace runs pytest on the clone's tests
    against the install; PYTEST_ADDOPTS narrows it to one small module here, collected alone (the
    whole suite is `make test`). Expected: every test function of that module, counted in its source."""
    ws, run = workspace
    assert run.returncode == 0, run.stderr[-3000:]
    module = ws / "src" / "jaeger_ros" / "tests" / "test_rosdep_keys.py"
    expected = len(re.findall(r"^def test_", module.read_text(), flags=re.M))
    venv_bin = Path(sys.executable).parent
    command = _as_unprivileged_user(
        ["env", f"PATH={venv_bin}:/usr/bin:/bin", f"AMENT_PREFIX_PATH={sys.prefix}", f"HOME={ws.parent / 'home'}",
         "PYTEST_ADDOPTS=-o python_files=test_rosdep_keys.py", str(venv_bin / "colcon"), "test", "--merge-install",
         "--packages-select", "jaeger_ros", "--event-handlers", "console_direct-"], ws.parent / "home")
    test = subprocess.run(command, cwd=ws, capture_output=True, text=True, timeout=900)
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    result = ET.parse(ws / "build" / "jaeger_ros" / "test_results" / "jaeger_ros" / "pytest.xml").getroot()
    suite = result if result.tag == "testsuite" else result.find("testsuite")
    assert int(suite.get("tests")) == expected > 0
    assert int(suite.get("failures")) == int(suite.get("errors")) == 0


def test_an_unmarked_folder_in_the_way_is_never_touched(tmp_path: Path) -> None:
    """Run from a checkout outside the workspace, the script copies into src/jaeger_ros only a
    folder it made itself: someone's own folder there stays as it was and the script exits 1."""
    mine = tmp_path / "ws" / "src" / "jaeger_ros"
    (mine / ".git").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine\n")
    run = subprocess.run(["bash", str(REPO / SCRIPT), str(tmp_path / "ws"), sys.executable], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "not a copy made by this script" in run.stderr
    assert sorted(p.name for p in mine.iterdir()) == [".git", "notes.txt"]
    assert (mine / "notes.txt").read_text() == "mine\n"


def test_a_venv_inside_the_sources_is_refused_with_one_line(tmp_path: Path) -> None:
    """CMake rejects a package whose exported include paths (numpy's headers) lie in its source
    folder, after a minute of building; the script says so at once and writes nothing."""
    package = tmp_path / "ws" / "src" / "jaeger_ros"
    (package / "tools").mkdir(parents=True)
    shutil.copy2(REPO / SCRIPT, package / SCRIPT)
    venv = package / ".venv"
    (venv / "bin").mkdir(parents=True)  # a minimal venv: pyvenv.cfg beside bin/ makes it sys.prefix
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys._base_executable).parent}\n")
    (venv / "bin" / "python").symlink_to(Path(sys._base_executable).resolve())
    run = subprocess.run(["bash", str(package / SCRIPT), str(tmp_path / "ws"), str(venv / "bin" / "python")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "create the venv outside" in run.stderr
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == ["src"]
    assert sorted(p.name for p in (tmp_path / "ws" / "src").iterdir()) == ["jaeger_ros"]
