"""Where the package's shared files (msg/, config/, launch/, package.xml) are.

The same code runs from a source checkout and from a colcon install prefix
(`<prefix>/lib/python3.X/site-packages/jaeger_ros` beside `<prefix>/share/jaeger_ros`), so
files are found relative to this module first, then through the ament prefixes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "jaeger_ros"


def share_candidates() -> list[Path]:
    """Folders that may hold the package's share files, most specific first."""
    here = Path(__file__).resolve()
    found = [here.parents[2]]                                   # source checkout: the repository root
    if len(here.parents) > 5:
        found.append(here.parents[5] / "share" / PACKAGE)       # install prefix of this module
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            found.append(Path(prefix) / "share" / PACKAGE)
    found.append(Path(sys.prefix) / "share" / PACKAGE)
    return found


def share_dir() -> Path:
    """The first folder holding package.xml and config/: the checkout or the installed share."""
    for candidate in share_candidates():
        if (candidate / "package.xml").is_file() and (candidate / "config").is_dir():
            return candidate
    raise FileNotFoundError(f"{PACKAGE} share files (package.xml, config/) not found; "
                            f"source the workspace's install/setup.bash")
