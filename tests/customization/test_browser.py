"""The customization section in the browser: live validation as you type, then the VM page's panel."""

import pytest
from playwright.sync_api import expect

from console.models import VM
from customization.models import VMCustomization
from tests.browser import log_in_as
from tests.conftest import make_user
from tests.customization.conftest import CLOUD_CONFIG
from tests.realparts import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_create_vm_with_a_live_validated_script(page, cluster, celery_processes, screenshots):
    celery_processes.worker()
    make_user("admin-e2e", "Admin")
    log_in_as(page, "admin-e2e")

    page.goto("/vms/new/")
    page.locator("#id_name").fill("web-1")
    page.locator("#id_disks-0-size_gib").fill("1")
    page.locator("#id_customization_kind").select_option("cloud-init")
    editor = page.locator("#id_customization_content")
    editor.fill("#cloud-config\nruncmd: 5\nfrobnicate: 1\n")
    result = page.locator("#customization-result")
    expect(result).to_contain_text("invalid")
    expect(result).to_contain_text("2:9")
    expect(result).to_contain_text("unknown key 'frobnicate'")
    page.screenshot(path=screenshots / "create-vm-invalid-script.png", full_page=True)
    editor.fill(CLOUD_CONFIG)
    expect(result).to_contain_text("valid")
    expect(result).not_to_contain_text("invalid")
    page.locator("#id_customization_key_values").fill("role=web")
    page.get_by_role("button", name="Create VM").click()

    vm = VM.objects.get(name="web-1")
    expect(page.get_by_role("heading", name="web-1")).to_be_visible()
    panel = page.locator("#customization-panel")
    wait_for(lambda: VMCustomization.objects.filter(vm=vm, status="media-attached").exists(), 30,
             "the create task to attach the media")
    page.reload()  # the panel loads with the page; the task may have ended after that
    expect(panel).to_contain_text("Media attached")
    expect(panel).to_contain_text("openstack/latest/user_data")
    page.screenshot(path=screenshots / "vm-panel.png", full_page=True)
    assert vm.customization.key_values == {"role": "web"}
