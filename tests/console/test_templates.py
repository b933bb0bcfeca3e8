"""Make-template and make-VM: a powered-off VM becomes the golden image clones are made from, and back; the
service, the API, the VM page's buttons and the command line."""

import re

import pytest

from console.core.drivers import DriverError
from console.core.errors import Conflict
from console.core.models import AuditEvent, Task
from console.models import VM
from console.services import power, templates, vms
from tests.conftest import client_for


def made(task: Task) -> Task:
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    return task


def test_a_powered_off_vm_becomes_a_template_and_back(vm, actor, run_tasks):
    task = templates.request_make_template(actor, vm)
    vm.refresh_from_db()
    assert vm.is_template  # at once: nothing powers it on while the task runs
    run_tasks()
    assert made(task).message == "web-1 is a template"
    assert AuditEvent.objects.filter(action="vm.make-template", entity_uuid=vm.uuid).exists()
    with pytest.raises(Conflict, match="is a template; clone it"):
        power.request_power(actor, vm, "power-on")

    task = templates.request_make_vm(actor, vm)
    run_tasks()
    made(task)
    vm.refresh_from_db()
    assert not vm.is_template
    assert AuditEvent.objects.filter(action="vm.make-vm", entity_uuid=vm.uuid).exists()
    power.request_power(actor, vm, "power-on")


@pytest.mark.parametrize(("state", "says"), [
    ("on", "VM web-1 is on: power it off (shut the guest down) before making it a template"),
    ("paused", "VM web-1 is paused: power it off"),
    ("creating", "VM web-1 is creating: power it off"),
])
def test_only_a_powered_off_vm_becomes_a_template(vm, actor, state, says):
    VM.objects.filter(pk=vm.pk).update(power_state=state)
    vm.refresh_from_db()
    with pytest.raises(Conflict, match=re.escape(says)):
        templates.request_make_template(actor, vm)
    vm.refresh_from_db()
    assert not vm.is_template and not Task.objects.filter(kind="vm.make-template").exists()


def test_a_template_is_not_made_a_template_again_nor_a_vm_a_vm(vm, actor, run_tasks):
    with pytest.raises(Conflict, match="web-1 is a VM, not a template"):
        templates.request_make_vm(actor, vm)
    templates.request_make_template(actor, vm)
    run_tasks()
    vm.refresh_from_db()
    with pytest.raises(Conflict, match="web-1 is already a template"):
        templates.request_make_template(actor, vm)


def test_a_vm_with_a_task_under_way_waits(vm, actor):
    power.request_power(actor, vm, "power-on")  # queued, not run
    with pytest.raises(Conflict, match=r"a task \(vm.power\) is queued on web-1; wait for it to end"):
        templates.request_make_template(actor, vm)


def test_a_failed_make_template_makes_it_a_vm_again(vm, actor, run_tasks, monkeypatch):
    from console.core.registry import registry

    def broken(vm):
        raise DriverError("the hypervisor went away")

    monkeypatch.setattr(registry, "hooks", lambda name: [broken] if name == "made_template" else [])
    task = templates.request_make_template(actor, vm)
    while True:  # the task framework retries; its last failure undoes
        run_tasks()
        task.refresh_from_db()
        if task.status != "queued":
            break
    assert task.status == "failed" and "the hypervisor went away" in task.error
    vm.refresh_from_db()
    assert not vm.is_template


def test_clones_of_a_template_are_vms(vm, actor, run_tasks):
    templates.request_make_template(actor, vm)
    run_tasks()
    vm.refresh_from_db()
    vms.request_clone(actor, vm, "web-2", power_on=True)
    run_tasks()
    clone = VM.objects.get(name="web-2")
    assert not clone.is_template and clone.power_state == "on" and clone.parent == vm


def test_the_api_makes_templates_and_vms(vm, api, run_tasks):
    response = api.post(f"/api/v1/vms/{vm.uuid}/make-template/")
    assert response.status_code == 202 and response.json()["kind"] == "vm.make-template"
    run_tasks()
    assert api.get(f"/api/v1/vms/{vm.uuid}/").json()["is_template"] is True
    again = api.post(f"/api/v1/vms/{vm.uuid}/make-template/")
    assert again.status_code == 409 and again.json()["vm"] == ["web-1 is already a template"]
    response = api.post(f"/api/v1/vms/{vm.uuid}/make-vm/")
    assert response.status_code == 202 and response.json()["kind"] == "vm.make-vm"
    run_tasks()
    assert api.get(f"/api/v1/vms/{vm.uuid}/").json()["is_template"] is False


def test_a_viewer_may_not_make_templates(vm, viewer):
    assert client_for(viewer).post(f"/api/v1/vms/{vm.uuid}/make-template/").status_code == 403
    vm.refresh_from_db()
    assert not vm.is_template


def test_the_vm_page_offers_make_template_when_off_and_make_vm_on_a_template(vm, client, operator, actor, run_tasks):
    client.force_login(operator)
    page = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert f'action="/vms/{vm.uuid}/make-template/"' in page and "make-vm/" not in page
    assert client.post(f"/vms/{vm.uuid}/make-template/").status_code == 302
    vm.refresh_from_db()
    assert vm.is_template
    run_tasks()
    page = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert f'action="/vms/{vm.uuid}/make-vm/"' in page and "make-template/" not in page
    client.post(f"/vms/{vm.uuid}/make-vm/")
    run_tasks()
    vm.refresh_from_db()
    assert not vm.is_template


def test_the_vm_page_offers_no_make_template_while_running_and_says_why_when_asked(vm, client, operator):
    VM.objects.filter(pk=vm.pk).update(power_state="on")
    client.force_login(operator)
    assert "make-template/" not in client.get(f"/vms/{vm.uuid}/").content.decode()
    response = client.post(f"/vms/{vm.uuid}/make-template/", follow=True)
    assert "power it off (shut the guest down) before making it a template" in response.content.decode()


def test_the_command_line_makes_templates_and_vms(facet_as_admin, vm, run_tasks):
    code, out, err = facet_as_admin("vm", "make-template", f"vm-id={vm.uuid}")
    assert code == 0, err
    assert out.startswith("vm.make-template web-1: task ")
    run_tasks()
    code, _, err = facet_as_admin("vm", "make-template", f"vm-id={vm.uuid}")
    assert code == 1 and "vm: web-1 is already a template" in err
    code, out, err = facet_as_admin("vm", "make-vm", f"vm-id={vm.uuid}")
    assert code == 0 and out.startswith("vm.make-vm web-1: task "), err
