"""The rlr worker process of acoustics_rlr.MeshAcoustics(worker_nice=...): rlr holds the GIL while
it simulates, so a live simulator runs it here instead of in its scene-building thread.

Usage (by acoustics_rlr only): python -m sim_bridge.mesh.rlr_worker RESULT_FD NICE. Reads pickled
jobs (the arguments of acoustics_rlr._rlr_simulate) from stdin until it closes; writes a pickled
("ok", impulse responses) or ("error", "Type: message") per job to RESULT_FD.
"""
from __future__ import annotations

import os
import pickle
import sys


def main(argv: list[str]) -> int:
    from sim_bridge.mesh.acoustics_rlr import _rlr_simulate
    results = os.fdopen(int(argv[0]), "wb")
    os.nice(int(argv[1]))
    while True:
        try:
            job = pickle.load(sys.stdin.buffer)
        except EOFError:
            return 0
        try:
            reply = ("ok", _rlr_simulate(*job))
        except Exception as err:   # the caller raises it; this process goes on
            reply = ("error", f"{type(err).__name__}: {err}")
        pickle.dump(reply, results)
        results.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
