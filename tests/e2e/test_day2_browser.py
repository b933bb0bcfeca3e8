"""Day-2 changes in the browser: the edit form with a bad value beside its field, a pending change on the VM's
page, disk and NIC rows added and removed. Tasks run in this process after each click (no broker here)."""

import pytest
from playwright.sync_api import expect

from console.core.actors import Actor
from console.models import VM
from console.services import power, vms
from tests.browser import log_in_as
from tests.conftest import make_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
GiB = 1024**3


@pytest.fixture
def running_vm(cluster, run_tasks, monkeypatch):
    monkeypatch.setattr("console.core.tasks.sending.send", lambda task: None)
    user = make_user("admin-e2e", "Admin")
    actor = Actor(user=user)
    vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=GiB, disk_sizes=[GiB]))
    run_tasks()
    vm = VM.objects.get(name="web-1")
    power.request_power(actor, vm, "power-on")
    run_tasks()
    return VM.objects.get(name="web-1")


def test_edit_pending_change_and_disk_and_nic_rows(page, running_vm, run_tasks, screenshots):
    vm = running_vm
    log_in_as(page, "admin-e2e")
    page.goto(f"/vms/{vm.uuid}/")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("vCPUs").fill("64")
    page.get_by_role("button", name="Save").click()
    field = page.locator(".field.has-error", has=page.locator("#id_vcpus"))
    expect(field).to_contain_text("more than host host-1 has (8)")
    page.screenshot(path=screenshots / "day2-edit-error.png", full_page=True)

    # 4 GiB is more than the running VM's maximum (2 GiB): it waits for the next power cycle.
    page.get_by_label("vCPUs").fill("2")
    page.get_by_label("Memory (GiB)").fill("4")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Task started: Edit VM web-1")).to_be_visible()
    run_tasks()
    page.reload()
    expect(page.locator("#pending-change")).to_contain_text("2 vCPUs, 4 GiB of memory")
    page.screenshot(path=screenshots / "day2-pending.png", full_page=True)

    page.get_by_label("New disk (GiB)").fill("2")
    page.get_by_role("button", name="Add disk").click()
    run_tasks()
    page.reload()
    expect(page.locator("#disk-1")).to_contain_text("2 GiB")
    page.get_by_role("button", name="Add NIC").click()
    run_tasks()
    page.reload()
    expect(page.locator("#nic-0")).to_contain_text("lan")
    page.screenshot(path=screenshots / "day2-rows-added.png", full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete disk 1").click()
    run_tasks()
    page.once("dialog", lambda dialog: dialog.accept())
    page.reload()
    page.get_by_role("button", name="Remove NIC 0").click()
    run_tasks()
    page.reload()
    expect(page.locator("#disk-1")).to_have_count(0)
    expect(page.locator("#nic-0")).to_have_count(0)
    page.screenshot(path=screenshots / "day2-rows-removed.png", full_page=True)
    vm.refresh_from_db()
    assert (vm.vcpus, vm.pending) == (1, {"vcpus": 2, "memory_bytes": 4 * GiB}) and not vm.nics.exists()
