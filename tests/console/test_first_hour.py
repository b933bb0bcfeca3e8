"""An administrator's first hour (issue 15), below the browser: labels from one table, the VM page's poll,
sizes checked before a task is accepted, no rerun or link for what a failure undid."""

import pytest

from console.core.actors import Actor
from console.core.drivers import DriverError
from console.core.errors import Conflict, InvalidRequest
from console.core.models import Task
from console.core.registry import registry
from console.core.tasks.control import rerun
from console.core.tasks.kinds import task_label
from console.models import VM
from console.services import vms
from tests.console.test_views import logged_in

TiB = 1024**4
GiB = 1024**3


def test_every_task_kind_has_a_label_for_people(db):
    unlabelled = [kind for kind in registry.task_kinds if kind not in registry.task_labels]
    assert unlabelled == []
    assert registry.task_labels["vm.clone"] == "Clone VM"
    assert task_label(Task(kind="vm.bulk", params={"action": "power-off"})) == "Bulk Power Off"
    assert task_label(Task(kind="vm.guest-shutdown")) == "Guest Shut Down"


def test_power_and_bulk_actions_carry_human_labels_and_the_api_keeps_its_words(api, vm):
    assert [action.label for action in registry.bulk_actions.ordered()][:5] == [
        "Power On", "Power Off", "Shut Down (ACPI)", "Reset", "Reboot (ACPI)"]
    assert registry.power_actions["guest-shutdown"].label == "Guest Shut Down"
    assert "Guest Tools" in registry.power_actions["guest-shutdown"].tooltip
    answer = api.post(f"/api/v1/vms/{vm.uuid}/power/", {"action": "power-on"}, format="json")
    assert answer.status_code == 202 and answer.json()["kind"] == "vm.power"


def test_the_vm_page_offers_labelled_power_buttons_with_tooltips(client, vm, operator):
    page = logged_in(client, operator).get(f"/vms/{vm.uuid}/").content.decode()
    assert 'title="Start the VM.">Power On</button>' in page
    assert ">power-on<" not in page


def test_the_vm_page_polls_fast_while_a_task_runs_and_reloads_its_panels(client, vm, operator):
    client = logged_in(client, operator)
    idle = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert 'hx-trigger="every 30s"' in idle
    client.post(f"/vms/{vm.uuid}/power/", {"action": "power-on"})  # queued: nothing runs the task here
    busy = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert 'hx-trigger="every 2s"' in busy and "was_pending=1" in busy
    poll = client.get(f"/vms/{vm.uuid}/?live=1", HTTP_HX_REQUEST="true")
    assert poll["HX-Trigger"] == "vm-refresh"  # the panels reload too
    assert 'id="vm-head"' in poll.content.decode() and 'id="vm-cdroms"' in poll.content.decode()
    Task.objects.update(status=Task.Status.SUCCEEDED)
    # Once more after the task ended (the panels show its outcome), then not any more.
    assert client.get(f"/vms/{vm.uuid}/?live=1&was_pending=1", HTTP_HX_REQUEST="true")["HX-Trigger"] == "vm-refresh"
    assert "HX-Trigger" not in client.get(f"/vms/{vm.uuid}/?live=1", HTTP_HX_REQUEST="true")


def test_the_poll_leaves_the_messages_for_the_next_page(client, vm, operator):
    client = logged_in(client, operator)
    client.post(f"/vms/{vm.uuid}/power/", {"action": "power-on"})
    assert "Task started" not in client.get(f"/vms/{vm.uuid}/?live=1", HTTP_HX_REQUEST="true").content.decode()
    assert "Task started: Change power state web-1" in client.get(f"/vms/{vm.uuid}/").content.decode()


def test_a_disk_larger_than_the_storage_container_has_free_is_refused_before_anything_is_written(cluster, actor):
    with pytest.raises(InvalidRequest) as refused:
        vms.request_create_vm(actor, vms.VMSpec(name="huge", vcpus=1, memory_bytes=GiB, disk_sizes=[60 * TiB]))
    assert "is more than storage container default has free" in refused.value.errors["disks[0].size_bytes"][0]
    assert not VM.objects.filter(name="huge").exists() and not Task.objects.exists()


def test_the_create_form_shows_the_free_space_beside_the_disk(client, cluster, operator):
    page = logged_in(client, operator).post("/vms/new/", {
        "name": "huge", "vcpus": 1, "memory_gib": 1, "guest_os": "linux",
        "disks-TOTAL_FORMS": 1, "disks-INITIAL_FORMS": 0, "disks-0-size_gib": 60 * 1024,
        "nics-TOTAL_FORMS": 0, "nics-INITIAL_FORMS": 0}).content.decode()
    assert "60 TiB is more than storage container default has free" in page
    assert "Traceback" not in page and not VM.objects.filter(name="huge").exists()


def test_a_full_clone_must_fit_and_a_linked_one_need_not(cluster, actor, run_tasks, monkeypatch):
    vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=GiB, disk_sizes=[GiB]))
    run_tasks()
    vm = VM.objects.get(name="web-1")
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("Usage", (), {"free": 1024})())
    with pytest.raises(InvalidRequest, match="has free"):
        vms.request_clone(actor, vm, "copy")
    vms.request_clone(actor, vm, "overlay", linked=True)


def test_a_rolled_back_create_offers_no_rerun_and_no_link(client, cluster, actor, operator, run_tasks, monkeypatch):
    def refuse(self, vm):
        raise DriverError("the hypervisor refused")

    monkeypatch.setattr("console.core.drivers.sim.SimDriver.create", refuse)
    task = vms.request_create_vm(actor, vms.VMSpec(name="doomed", vcpus=1, memory_bytes=GiB))
    run_tasks()
    task.refresh_from_db()
    assert task.status == "failed" and not VM.objects.filter(name="doomed").exists()
    client = logged_in(client, operator)
    page = client.get(f"/tasks/{task.uuid}/").content.decode()
    assert "Rerun" not in page and f"/vms/{task.entity_uuid}/" not in page
    assert "doomed no longer exists" in page
    assert f"/vms/{task.entity_uuid}/" not in client.get("/tasks/").content.decode()
    assert f"/vms/{task.entity_uuid}/" not in client.get("/").content.decode()
    with pytest.raises(Conflict, match="no longer exists"):
        rerun(Actor.system(), task)
    refused = client.post(f"/tasks/{task.uuid}/rerun/", follow=True).content.decode()
    assert "no longer exists" in refused
    assert Task.objects.get(pk=task.pk).status == "failed"
