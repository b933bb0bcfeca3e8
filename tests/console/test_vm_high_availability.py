"""Marking a VM for high availability: an edit like any other (service, API with its ETag, the Edit page),
shown on the VM's page, audited, taking effect at once; and a marked VM is the one restarted elsewhere when its
host fails (console/services/hosts.py)."""

import pytest
from django.contrib.messages import get_messages

from console.core.models import AuditEvent, SimDomain, Task
from console.models import VM, Host
from console.services import hosts, power, vm_edit
from tests.conftest import client_for
from tests.console.test_hosts import silence


def succeeded(run_tasks, task: Task) -> Task:
    run_tasks()
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.error
    return task


def test_a_running_vm_is_marked_at_once_without_a_power_cycle_and_the_edit_is_audited(vm, actor, run_tasks):
    succeeded(run_tasks, power.request_power(actor, vm, "power-on"))
    vm.refresh_from_db()
    task = succeeded(run_tasks, vm_edit.request_update(actor, vm, {"high_availability": True}))
    vm.refresh_from_db()
    assert (vm.high_availability, vm.power_state, vm.pending, vm.version) == (True, "on", {}, 2)
    assert "power cycle" not in task.message
    event = AuditEvent.objects.get(action="vm.update")
    assert (event.detail["changes"], event.detail["before"]) == ({"high_availability": True},
                                                                 {"high_availability": False})


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_value_that_is_not_true_or_false_is_refused_naming_the_field(vm, actor, value):
    with pytest.raises(vm_edit.InvalidRequest) as error:
        vm_edit.request_update(actor, vm, {"high_availability": value})
    assert "high_availability" in error.value.errors
    vm.refresh_from_db()
    assert (vm.high_availability, vm.version) == (False, 1)
    assert not Task.objects.filter(kind="vm.update").exists()


def test_a_template_is_not_marked(vm, actor):
    VM.objects.filter(pk=vm.pk).update(is_template=True)
    vm.refresh_from_db()
    with pytest.raises(vm_edit.InvalidRequest, match="template and never runs"):
        vm_edit.request_update(actor, vm, {"high_availability": True})


def test_patch_marks_it_with_the_etag_rules_and_get_shows_it(vm, api, run_tasks):
    url = f"/api/v1/vms/{vm.uuid}/"
    got = api.get(url)
    assert got.json()["high_availability"] is False
    marked = api.patch(url, {"high_availability": True}, format="json", HTTP_IF_MATCH=got["ETag"])
    assert marked.status_code == 202, marked.json()
    stale = api.patch(url, {"high_availability": False}, format="json", HTTP_IF_MATCH=got["ETag"])
    assert stale.status_code == 412 and "changed meanwhile" in stale.json()["If-Match"][0]
    bad = api.patch(url, {"high_availability": "maybe"}, format="json")
    assert bad.status_code == 400 and "high_availability" in bad.json()
    run_tasks()
    assert api.get(url).json()["high_availability"] is True


def test_a_viewer_cannot_mark_a_vm(vm, viewer):
    answer = client_for(viewer).patch(f"/api/v1/vms/{vm.uuid}/", {"high_availability": True}, format="json")
    assert answer.status_code == 403
    vm.refresh_from_db()
    assert not vm.high_availability


def test_the_edit_page_marks_it_and_the_vm_page_says_so(vm, client, operator, run_tasks):
    client.force_login(operator)
    page = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert '<dd id="vm-high-availability">Off</dd>' in page
    form = client.get(f"/vms/{vm.uuid}/edit/").content.decode()
    assert 'name="high_availability"' in form and "High availability" in form
    answer = client.post(f"/vms/{vm.uuid}/edit/", {
        "name": vm.name, "description": "", "vcpus": 1, "memory_gib": "1", "boot_order": "hd",
        "high_availability": "on", "version": vm.version})
    assert answer.status_code == 302
    assert [str(m) for m in get_messages(answer.wsgi_request)] == [f"Task started: Edit VM {vm.name}"]
    succeeded(run_tasks, Task.objects.get(kind="vm.update"))
    page = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert "restarted on another host if host-1 fails" in page
    # Unticked: the box sends nothing, which is "off".
    vm.refresh_from_db()
    client.post(f"/vms/{vm.uuid}/edit/", {"name": vm.name, "description": "", "vcpus": 1, "memory_gib": "1",
                                          "boot_order": "hd", "version": vm.version})
    vm.refresh_from_db()
    assert not vm.high_availability


def test_a_vm_marked_through_the_api_is_restarted_elsewhere_when_its_host_fails(
        cluster, vm, api, actor, run_tasks, settings):
    succeeded(run_tasks, power.request_power(actor, vm, "power-on"))
    assert api.patch(f"/api/v1/vms/{vm.uuid}/", {"high_availability": True}, format="json").status_code == 202
    run_tasks()
    failed = VM.objects.get(pk=vm.pk).host.name
    hosts.beat_workers([h.name for h in Host.objects.all()])
    silence(failed, settings.FACET_HOST_UNREACHABLE_SECONDS + 1)
    hosts.check_hosts()
    run_tasks()
    vm.refresh_from_db()
    assert (vm.power_state, vm.down_reason) == ("on", "") and vm.host.name != failed
    assert SimDomain.objects.get(uuid=vm.uuid).host_name == vm.host.name
