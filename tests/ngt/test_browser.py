"""Guest Tools in the browser: the panel loads into a VM's page, Mount runs through a real worker, and the
panel then shows the mounted ISO and its certificate."""

import pytest
from playwright.sync_api import expect

from console.services import vms
from tests.browser import log_in_as
from tests.conftest import make_user
from tests.integration.test_worker import wait_until_ended

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_mount_from_the_vm_page(page, cluster, actor, celery_processes, screenshots):
    celery_processes.worker()
    task = vms.request_create_vm(actor, vms.VMSpec(name="tools-1", vcpus=1, memory_bytes=1024**3))
    assert wait_until_ended(task).status == "succeeded", task.error
    make_user("operator-e2e", "Operator")
    log_in_as(page, "operator-e2e")

    page.goto(f"/vms/{task.entity_uuid}/")
    panel = page.locator("#guest-tools-panel")
    expect(panel.get_by_text("not enabled")).to_be_visible()
    panel.get_by_label("VSS snapshots").check()
    panel.get_by_role("button", name="Save capabilities").click()
    expect(page.get_by_text("capabilities of tools-1: vss-snapshot")).to_be_visible()
    page.locator("#guest-tools-panel").get_by_role("button", name="Mount").click()
    expect(page.get_by_text("Task started: Mount Guest Tools")).to_be_visible()
    mount = task.__class__.objects.get(kind="ngt.mount")
    assert wait_until_ended(mount).status == "succeeded", mount.error
    page.reload()
    panel = page.locator("#guest-tools-panel")
    expect(panel.get_by_text("mounted in CD-ROM 0")).to_be_visible()
    expect(panel.get_by_role("button", name="Remount")).to_be_visible()
    expect(page.get_by_role("cell", name="Guest Tools", exact=True)).to_be_visible()  # the CD-ROMs table
    page.screenshot(path=screenshots / "guest-tools-panel.png", full_page=True)
    # The tools ISO's row offers Unmount (which deletes the ISO), not a plain eject.
    page.locator("table").get_by_role("button", name="Unmount Guest Tools").click()
    unmount = task.__class__.objects.get(kind="ngt.unmount")
    assert wait_until_ended(unmount).status == "succeeded", unmount.error
