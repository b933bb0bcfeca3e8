"""`facet snapshot create|list|revert|delete` against a live console, tasks run in-process."""

import json

from console.models import Snapshot


def test_create_list_revert_and_delete(facet_as_admin, disk_vm, run_tasks):
    facet = facet_as_admin
    code, out, err = facet("snapshot", "create", f"vm-id={disk_vm.uuid}", "name=first", "description=before")
    assert code == 0 and "snapshot.create" in out and "facet task get" in err
    run_tasks()
    facet("snapshot", "create", f"vm-id={disk_vm.uuid}", "name=second")
    run_tasks()

    code, out, _ = facet("snapshot", "list", f"vm-id={disk_vm.uuid}")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:5] == ["NAME", "UUID", "STATE", "CONSISTENT", "SIZE"]
    assert lines[1].startswith("first ") and lines[2].startswith("  second *")
    assert "the VM was off" in lines[1]

    first = Snapshot.objects.get(name="first")
    code, out, _ = facet("snapshot", "revert", f"vm-id={disk_vm.uuid}", f"snapshot-id={first.uuid}")
    assert code == 0 and "snapshot.revert" in out
    run_tasks()
    second = Snapshot.objects.get(name="second")
    code, _, _ = facet("snapshot", "delete", f"vm-id={disk_vm.uuid}", f"snapshot-id={second.uuid}")
    run_tasks()
    code, out, _ = facet("--json", "snapshot", "list", f"vm-id={disk_vm.uuid}")
    assert [s["name"] for s in json.loads(out)] == ["first"]


def test_refusals_name_the_key(facet_as_admin, disk_vm, run_tasks, actor):
    facet = facet_as_admin
    code, _, err = facet("snapshot", "create", f"vm-id={disk_vm.uuid}", "name=has space")
    assert code != 0 and "name" in err
    code, _, err = facet("snapshot", "create", f"vm-id={disk_vm.uuid}")
    assert code != 0 and "name" in err
    facet("snapshot", "create", f"vm-id={disk_vm.uuid}", "name=first")
    facet("vm", "power-on", f"vm-id={disk_vm.uuid}")
    run_tasks()
    first = Snapshot.objects.get(name="first")
    code, _, err = facet("snapshot", "revert", f"vm-id={disk_vm.uuid}", f"snapshot-id={first.uuid}")
    assert code != 0 and "confirm" in err and "running state" in err
    code, out, _ = facet("snapshot", "revert", f"vm-id={disk_vm.uuid}", f"snapshot-id={first.uuid}", "confirm=true")
    assert code == 0
