"""The folders show the data path; this keeps the imports flowing one way along it.

core → simulation (sim_bridge) → data → classical | model → pipeline → ROS edge → cli. A module may import
its own stage and earlier ones only; classical and model are siblings and never import each
other; rclpy and the generated messages (`jaeger_ros.msg`) belong to the ROS edge alone.
Every import statement counts, including those inside functions and TYPE_CHECKING blocks.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# stage name -> rank; the same rank for siblings that must not import each other
RANK = {"core": 0, "sim": 1, "data": 2, "classical": 3, "model": 3, "tracker": 3, "detectors": 3.25, "pipeline": 3.5, "ros": 4, "cli": 5}
ROS_ONLY = ("rclpy", "jaeger_ros.msg", "sensor_msgs", "std_msgs", "geometry_msgs", "visualization_msgs",
            "diagnostic_msgs", "builtin_interfaces", "tf2_msgs", "lifecycle_msgs", "rcl_interfaces")


def stage_of(module: str) -> str | None:
    """Stage of one of our dotted module names (None for third-party modules)."""
    parts = module.split(".")
    if parts[0] == "sim_bridge":
        return "ros" if parts[1:2] == ["node"] else "sim"
    if parts[0] != "jaeger_ros":
        return None
    if len(parts) == 1 or parts[1] in ("__init__", "msg"):
        return "core" if len(parts) == 1 or parts[1] == "__init__" else "ros"
    return parts[1] if parts[1] in RANK else None


def our_modules() -> dict[str, Path]:
    found = {}
    for package in ("jaeger_ros", "sim_bridge"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            found[".".join(rel.parts).removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in a file, relative imports resolved."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[:-node.level] if not path.name == "__init__.py" else \
                    module.split(".")[:len(module.split(".")) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            names.append((node.lineno, base))
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


MODULES = our_modules()


def test_every_module_has_a_stage() -> None:
    assert len(MODULES) > 30
    unplaced = [m for m in MODULES if stage_of(m) is None]
    assert not unplaced, f"modules outside the stage folders: {unplaced}"


def violations(module: str, path: Path) -> list[str]:
    """Imports of `path` (as `module`) that go against the data path."""
    stage = stage_of(module)
    bad = []
    for line, name in imports_of(path, module):
        if RANK[stage] < RANK["ros"] and any(name == n or name.startswith(n + ".") for n in ROS_ONLY):
            bad.append(f"line {line}: {name} (ROS belongs to the ROS edge)")
            continue
        target = stage_of(name)
        if target is not None and target != stage and RANK[target] >= RANK[stage]:
            bad.append(f"line {line}: {name} ({stage} may not import {target})")
    return bad


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_one_way(module: str) -> None:
    bad = violations(module, MODULES[module])
    assert not bad, f"{module}: " + "; ".join(bad)


def test_checker_catches_backward_imports(tmp_path: Path) -> None:
    """The rule must be able to fail: core importing the ROS edge, rclpy or a sibling stage is caught."""
    bad = tmp_path / "geometry.py"
    bad.write_text("def f():\n    from jaeger_ros.ros import convert\n    import rclpy\n")
    found = violations("jaeger_ros.core.geometry", bad)
    assert "line 2: jaeger_ros.ros.convert (core may not import ros)" in found
    assert "line 3: rclpy (ROS belongs to the ROS edge)" in found
    sibling = tmp_path / "doa.py"
    sibling.write_text("from jaeger_ros.model.iv import ClassicalIV\nfrom jaeger_ros.core import foa\n")
    assert violations("jaeger_ros.classical.doa", sibling) == [
        "line 1: jaeger_ros.model.iv (classical may not import model)",
        "line 1: jaeger_ros.model.iv.ClassicalIV (classical may not import model)"]
