"""Issue 19's proof: three hosts in network namespaces (bench/cluster_failover.py builds them, on a bridge of
its own, with PostgreSQL and Redis), 300 simulated agents over TLS to the VIP, a bulk power-on, a drain, the
leader's host SIGKILLed, Redis killed and restarted. Needs root; about three minutes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, veth pairs, a bridge"),
    pytest.mark.skipif(not shutil.which("redis-server") or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                       reason="needs redis-server and PostgreSQL's server"),
]


def namespaces_of(pid: int) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(f"fcb{pid % 100000}-")]


def test_a_three_host_cluster_survives_its_leaders_host_and_a_redis_restart(tmp_path):
    results_file = tmp_path / "results.json"
    run = subprocess.Popen([sys.executable, str(ROOT / "bench" / "cluster_failover.py"), "--json", str(results_file)],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = run.communicate(timeout=330)
    finally:
        if run.poll() is None:
            run.terminate()  # the script cleans up on SIGTERM
            output, _ = run.communicate(timeout=60)
        for name in namespaces_of(run.pid):  # whatever happened to it, no namespace stays behind
            subprocess.run(["ip", "netns", "delete", name], check=False)
    assert run.returncode == 0, output[-6000:]
    assert not namespaces_of(run.pid)
    results = json.loads(results_file.read_text())
    print(output)
    # a bulk power-on of 300 VMs spreads over the three host queues
    assert results["bulk_status"] == "succeeded" and results["bulk_on"] == 300
    assert sorted(results["bulk_spread"]) == ["host.host-1", "host.host-2", "host.host-3"]
    assert min(results["bulk_spread"].values()) >= 50
    # a host put in maintenance ends with no VM on it, and leaves maintenance
    assert results["maintenance_vms_before"] > 0 and results["maintenance_vms_after"] == 0
    assert (results["maintenance_status"], results["maintenance_left"]) == ("succeeded", "ready")
    # SIGKILL of every process of the leader's host
    assert results["failover_s"] < 15 and results["new_leader"] != results["killed_host"]
    assert results["reconnect_s"] < 30
    assert len(results["vip_holders_alive"]) == 1
    assert results["unreachable_s"] < 60 and results["unreachable_errors"] == ["host unreachable"]
    assert results["killed_host_state"] == "unreachable" and results["killed_host_vms_unknown"] > 0
    assert results["ha_vms"] > 0 and results["ha_restarted"] == results["ha_vms"]
    # Redis SIGKILLed and restarted from its AOF: a leader again, no task lost, every agent back
    assert results["redis_leader_back_s"] < 30 and results["redis_tasks_done_s"] < 120
