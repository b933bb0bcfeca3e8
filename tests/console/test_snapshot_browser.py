"""Snapshots in the browser, through a real worker: take two from the VM page's panel, see the tree, revert the
running VM through the confirmation page that says its running state is lost."""

import pytest
from playwright.sync_api import expect

from console.core.models import Task
from console.models import Image, Snapshot
from console.services import vms
from tests.browser import log_in_as
from tests.conftest import make_user
from tests.integration.test_worker import wait_until_ended

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def ended(kind: str, count: int = 1) -> None:
    for task in Task.objects.filter(kind=kind).order_by("id")[:count]:
        assert wait_until_ended(task).status == "succeeded", task.error


def test_the_snapshot_tree_and_a_revert_with_confirmation(page, cluster, actor, celery_processes, screenshots):
    celery_processes.worker()
    task = vms.request_create_vm(actor, vms.VMSpec(name="app-1", vcpus=1, memory_bytes=256 * 1024**2,
                                                   image=Image.objects.get(name="base-disk"), power_on=True))
    assert wait_until_ended(task).status == "succeeded", task.error
    make_user("operator-e2e", "Operator")
    log_in_as(page, "operator-e2e")

    page.goto(f"/vms/{task.entity_uuid}/")
    for number, (name, description) in enumerate([("before-upgrade", "kernel 6.1, app 2.3"),
                                                  ("after-upgrade", "app 2.4")], start=1):
        panel = page.locator("#snapshot-panel")
        panel.get_by_label("Snapshot name").fill(name)
        panel.get_by_label("Description").fill(description)
        panel.get_by_role("button", name="Take snapshot").click()
        expect(page.get_by_text("Task started: Take Snapshot")).to_be_visible()
        ended("snapshot.create", number)
    page.reload()
    tree = page.get_by_role("tree", name="Snapshots of app-1")
    expect(tree.get_by_role("treeitem")).to_have_count(2)
    expect(tree.locator('[aria-level="2"]')).to_contain_text("after-upgrade")
    expect(tree.locator(".snapshot-current")).to_contain_text("you are here")
    page.locator("#snapshot-panel").screenshot(path=screenshots / "snapshot-tree.png")

    first = tree.get_by_role("treeitem").filter(has_text="before-upgrade")
    first.get_by_role("link", name="Revert").click()
    expect(page.get_by_role("heading", name="Revert app-1 to before-upgrade?")).to_be_visible()
    expect(page.get_by_text("losing its running state")).to_be_visible()
    page.screenshot(path=screenshots / "snapshot-revert-confirm.png", full_page=True)
    page.get_by_role("button", name="Revert").click()
    expect(page.get_by_text("Task started: Revert to Snapshot")).to_be_visible()
    ended("snapshot.revert")
    page.reload()
    current = page.get_by_role("tree", name="Snapshots of app-1").locator(".snapshot-current")
    expect(current).to_contain_text("before-upgrade")
    assert Snapshot.objects.get(is_current=True).name == "before-upgrade"
    page.locator("#snapshot-panel").screenshot(path=screenshots / "snapshot-tree-reverted.png")
