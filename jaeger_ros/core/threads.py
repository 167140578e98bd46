"""Background threads that yield to the frame path."""
from __future__ import annotations

import os
import threading


def lower_this_thread(by: int) -> None:
    """Raise the calling thread's niceness by `by` (Linux threads have their own): background work
    (a detector run, a simulator's next scene) then takes the cores only when the 10 Hz frame path
    leaves them. Elsewhere, or where it is not allowed, the thread keeps its priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + by)
    except (AttributeError, OSError):
        pass
