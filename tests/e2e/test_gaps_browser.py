"""In the browser: marking a VM for high availability on its Edit page and seeing it on the VM's page; the host
page's "Unmanaged domains" section opened, a domain adopted under a new name, one that cannot be shown with why.
Tasks run in this process after each click (no broker here)."""

import pytest
from playwright.sync_api import expect

from console.core.actors import Actor
from console.core.models import SimDomain
from console.models import VM, Host
from console.services import power, vms
from tests.browser import log_in_as
from tests.conftest import make_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
GiB, MiB = 1024**3, 1024**2


@pytest.fixture
def operator_page(page, cluster, monkeypatch):
    monkeypatch.setattr("console.core.tasks.sending.send", lambda task: None)
    make_user("operator-e2e", "Operator")
    log_in_as(page, "operator-e2e")
    return page


def test_high_availability_is_ticked_on_the_edit_page_and_shown_on_the_vm_page(operator_page, run_tasks,
                                                                               screenshots):
    page = operator_page
    actor = Actor(user=make_user("admin-e2e", "Admin"))
    vms.request_create_vm(actor, vms.VMSpec(name="db-1", vcpus=1, memory_bytes=GiB, disk_sizes=[GiB]))
    run_tasks()
    vm = VM.objects.get(name="db-1")
    power.request_power(actor, vm, "power-on")
    run_tasks()
    page.goto(f"/vms/{vm.uuid}/")
    expect(page.locator("#vm-high-availability")).to_have_text("Off")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("High availability").check()
    page.screenshot(path=screenshots / "gaps-edit-high-availability.png", full_page=True)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Task started: Edit VM db-1")).to_be_visible()
    run_tasks()
    page.reload()
    expect(page.locator("#vm-high-availability")).to_contain_text("On (restarted on another host if host-1 fails)")
    expect(page.locator("#pending-change")).to_have_count(0)  # no power cycle for it
    page.screenshot(path=screenshots / "gaps-vm-high-availability.png", full_page=True)
    vm.refresh_from_db()
    assert vm.high_availability and vm.power_state == "on"


def test_unmanaged_domains_are_opened_adopted_and_refused_with_why(operator_page, cluster, run_tasks, tmp_path,
                                                                     screenshots):
    page = operator_page
    disk = cluster.storage_containers.get().resolve("legacy/root.raw")
    disk.parent.mkdir()
    disk.write_bytes(b"\0" * MiB)
    outside = tmp_path / "elsewhere.qcow2"
    outside.write_bytes(b"\0" * MiB)
    SimDomain.objects.create(uuid="6f1c8a8e-2b7d-4c2e-9a59-5d7a4f3e2b10", host_name="host-1", power_state="on",
                             definition={"name": "legacy", "vcpus": 2, "memory_bytes": 512 * MiB,
                                         "disks": {str(disk): "raw"}, "nics": {"52:54:00:aa:bb:cc": "lan"}})
    SimDomain.objects.create(uuid="0e6a2f5c-3a2b-4f8e-8d7e-111111111111", host_name="host-1", power_state="off",
                             definition={"name": "stray", "vcpus": 1, "memory_bytes": 256 * MiB,
                                         "disks": {str(outside): "qcow2"}})
    host = Host.objects.get(name="host-1")
    page.goto(f"/hosts/{host.uuid}/")
    section = page.locator("#unmanaged")
    expect(section).to_contain_text("open to read them from the hypervisor")
    page.screenshot(path=screenshots / "gaps-host-unmanaged-closed.png", full_page=True)
    section.locator("summary").click()
    expect(section.locator("#unmanaged-domains")).to_be_visible()
    stray = section.locator("#domain-0e6a2f5c-3a2b-4f8e-8d7e-111111111111")
    expect(stray).to_contain_text("Cannot be adopted:")
    expect(stray).to_contain_text("is outside every storage container")
    expect(stray.get_by_role("button")).to_have_count(0)
    page.get_by_label("Name of the VM adopted from legacy").fill("legacy-web")
    page.screenshot(path=screenshots / "gaps-host-unmanaged-open.png", full_page=True)
    page.get_by_role("button", name="Adopt legacy").click()
    expect(page.get_by_text("Task started: Adopt VM legacy-web")).to_be_visible()
    run_tasks()
    page.reload()
    expect(page.locator("#unmanaged-domains")).to_be_visible()  # opened again by itself after the adopt
    expect(page.locator("#unmanaged-domains")).not_to_contain_text("legacy")
    expect(page.get_by_role("link", name="legacy-web")).to_be_visible()
    page.screenshot(path=screenshots / "gaps-host-unmanaged-adopted.png", full_page=True)
    assert VM.objects.get(name="legacy-web").power_state == "on"
