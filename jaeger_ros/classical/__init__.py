"""Classical signal-processing baseline: intensity-vector DoA, depth-only candidates, matching."""
