"""`/api/v1/vms/{uuid}/snapshots/`: statuses, shapes, errors per field, permissions per role."""

import uuid

import pytest

from console.models import VM, Snapshot
from tests.conftest import client_for

MiB = 1024**2


def url(vm, *rest) -> str:
    return "/".join([f"/api/v1/vms/{vm.uuid}/snapshots", *rest]) + "/"


def test_create_list_revert_and_delete(api, disk_vm, run_tasks):
    answer = api.post(url(disk_vm), {"name": "first", "description": "before the upgrade"}, format="json")
    assert answer.status_code == 202 and answer.json()["kind"] == "snapshot.create"
    run_tasks()
    api.post(url(disk_vm), {"name": "second"}, format="json")
    run_tasks()

    body = api.get(url(disk_vm)).json()
    assert [(s["name"], s["depth"], s["is_current"]) for s in body] == [("first", 0, False), ("second", 1, True)]
    first, second = body
    assert second["parent"] == first["uuid"]
    assert (first["consistent"], first["consistency_note"], first["created_by"]) == (True, "the VM was off", "alice")
    assert first["size_bytes"] > 0 and first["description"] == "before the upgrade"
    assert api.get(url(disk_vm, first["uuid"])).json()["name"] == "first"

    answer = api.post(url(disk_vm, first["uuid"], "revert"), {}, format="json")
    assert answer.status_code == 202 and answer.json()["kind"] == "snapshot.revert"
    run_tasks()
    assert Snapshot.objects.get(name="first").is_current

    answer = api.delete(url(disk_vm, second["uuid"]))
    assert answer.status_code == 202 and answer.json()["kind"] == "snapshot.delete"
    run_tasks()
    assert [s["name"] for s in api.get(url(disk_vm)).json()] == ["first"]


def test_a_clone_from_a_snapshot(api, disk_vm, run_tasks):
    api.post(url(disk_vm), {"name": "first"}, format="json")
    run_tasks()
    snapshot = Snapshot.objects.get()
    answer = api.post(f"/api/v1/vms/{disk_vm.uuid}/clone/", {"name": "copy", "snapshot": str(snapshot.uuid)},
                      format="json")
    assert answer.status_code == 202
    run_tasks()
    assert VM.objects.get(name="copy").power_state == "off"
    bad = api.post(f"/api/v1/vms/{disk_vm.uuid}/clone/", {"name": "copy2", "snapshot": str(uuid.uuid4())},
                   format="json")
    assert bad.status_code == 400 and "snapshot" in bad.json()


def test_bad_requests_name_the_field(api, disk_vm, run_tasks):
    assert api.post(url(disk_vm), {"name": "a b"}, format="json").json().keys() == {"name"}
    assert api.post(url(disk_vm), {}, format="json").status_code == 400
    assert api.post(url(disk_vm), {"name": "ok", "description": "x" * 300}, format="json").json().keys() == {
        "description"}
    assert api.get(f"/api/v1/vms/{uuid.uuid4()}/snapshots/").status_code == 404
    assert api.get(url(disk_vm, str(uuid.uuid4()))).status_code == 404
    api.post(url(disk_vm), {"name": "first"}, format="json")
    run_tasks()
    assert api.post(url(disk_vm), {"name": "first"}, format="json").status_code == 409


def test_reverting_a_running_vm_without_confirming_is_409_naming_confirm(api, disk_vm, run_tasks):
    api.post(url(disk_vm), {"name": "first"}, format="json")
    api.post(f"/api/v1/vms/{disk_vm.uuid}/power/", {"action": "power-on"}, format="json")
    run_tasks()
    snapshot = Snapshot.objects.get()
    refused = api.post(url(disk_vm, str(snapshot.uuid), "revert"), {}, format="json")
    assert refused.status_code == 409 and "running state" in refused.json()["confirm"][0]
    assert api.post(url(disk_vm, str(snapshot.uuid), "revert"), {"confirm": True}, format="json").status_code == 202


def test_another_vms_snapshot_is_not_found_through_this_vm(api, disk_vm, actor, run_tasks):
    other = VM.objects.create(cluster=disk_vm.cluster, name="other", vcpus=1, memory_bytes=MiB * 64,
                              host=disk_vm.host, power_state="off")
    api.post(url(disk_vm), {"name": "first"}, format="json")
    run_tasks()
    assert api.get(url(other, str(Snapshot.objects.get().uuid))).status_code == 404
    assert api.delete(url(other, str(Snapshot.objects.get().uuid))).status_code == 404


@pytest.mark.parametrize(("role", "read", "write"), [(None, 401, 401), ("viewer", 200, 403), ("operator", 200, 202)])
def test_permissions_by_role(disk_vm, viewer, operator, role, read, write):
    client = client_for({"viewer": viewer, "operator": operator}.get(role))
    assert client.get(url(disk_vm)).status_code == read
    assert client.post(url(disk_vm), {"name": "first"}, format="json").status_code == write
