"""Waiting for something that happens in another process. Standard library only: the bench scripts that drive
real processes (bench/cluster_failover.py) wait with it too, before Django is set up."""

import time


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Call `predicate` until it answers something true, and answer that; fail once `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
