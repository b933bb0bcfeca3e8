"""The VM page updates itself (issue 15, items 2 and 3), with the real parts: a Guest Tools Service, a
simulated guest running the real agent, a Celery worker. The page is never reloaded by the test: the Guest
Tools link coming up shows the guest's own power actions, and Guest Shut Down ends with the VM off."""

import sys

import pytest
from playwright.sync_api import expect

from console.core.models import SimDomain, Task
from console.models import VM
from tests.browser import log_in_as
from tests.conftest import make_user
from tests.ngt import test_daemon
from tests.ngt.test_agent import REPOSITORY
from tests.ngt.test_daemon import state

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The Guest Tools Service fixtures, shared.
mounted_vm, service, short_data_dir = test_daemon.mounted_vm, test_daemon.service, test_daemon.short_data_dir
LIVE = 45_000  # ms: the sim guest's start, its link, and the page's 2 s poll


def test_the_vm_page_follows_the_link_and_a_guest_shutdown_without_a_reload(
        page, short_data_dir, service, celery_processes, mounted_vm, screenshots):
    vm, _ = mounted_vm
    VM.objects.filter(pk=vm.pk).update(power_state=VM.PowerState.ON)
    SimDomain.objects.filter(uuid=vm.uuid).update(power_state="on")
    make_user("operator-e2e", "Operator")
    log_in_as(page, "operator-e2e")
    page.goto(f"/vms/{vm.uuid}/")
    head = page.locator("#vm-head")
    expect(page.locator("#guest-tools-panel")).to_contain_text("inactive")
    expect(head.get_by_role("button", name="Guest Shut Down")).to_have_count(0)
    page.screenshot(path=screenshots / "live-before-link-1280.png", full_page=True)

    celery_processes.worker()
    service(vm.host.name, "leading:")
    celery_processes.start("sim-guests", f"{sys.executable} {REPOSITORY / 'manage.py'} sim_guests "
                           f"--host {vm.host.name} --interval 0.5", None)
    shutdown = head.get_by_role("button", name="Guest Shut Down")
    expect(shutdown).to_be_visible(timeout=LIVE)  # no reload: the page polls while the link is pending
    expect(shutdown).to_have_attribute("title", "Through Guest Tools: the guest's own OS shuts down cleanly, "
                                                "then the VM powers off.")
    expect(page.locator("#guest-tools-panel")).to_contain_text("active", timeout=LIVE)
    assert state(vm).link_active
    page.screenshot(path=screenshots / "live-linked-1280.png", full_page=True)
    page.set_viewport_size({"width": 900, "height": 900})
    page.screenshot(path=screenshots / "live-linked-900.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    shutdown.click()
    expect(page.get_by_text("Task started: Guest Shut Down")).to_be_visible()
    # The task ends only once the VM is off, and the page shows it by itself.
    expect(head.locator(".badge.state-off")).to_be_visible(timeout=LIVE)
    expect(head.get_by_role("button", name="Power On")).to_be_visible()
    task = Task.objects.get(kind="vm.guest-shutdown")
    assert task.status == "succeeded", task.error
    assert task.message == f"{vm.name} is off: its guest shut down"
    assert VM.objects.get(pk=vm.pk).power_state == "off"
    page.screenshot(path=screenshots / "live-after-shutdown-1280.png", full_page=True)
