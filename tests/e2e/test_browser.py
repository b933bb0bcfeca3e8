"""What an administrator does in the browser, end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from console.core.models import Task
from console.models import VM
from console.services import demo
from tests.browser import log_in_as
from tests.conftest import make_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded(cluster):
    """The demo fleet, and an admin who logs in with a known password."""
    demo.seed(12)
    make_user("admin-e2e", "Admin")


def test_list_power_and_bulk_journey(page, seeded, celery_processes, screenshots):
    celery_processes.worker()
    log_in_as(page, "admin-e2e")
    page.screenshot(path=screenshots / "dashboard.png", full_page=True)

    page.get_by_role("link", name="VMs", exact=True).click()
    page.get_by_label("Search").fill("web")
    page.get_by_role("button", name="Apply", exact=True).click()
    rows = page.locator("table.vm-table tbody tr")
    expect(rows).to_have_count(VM.objects.filter(name__contains="web", is_template=False).count())
    page.get_by_label("Search").fill("")
    page.locator("select[name=power_state]").select_option("off")
    page.get_by_role("button", name="Apply", exact=True).click()
    off = VM.objects.filter(power_state="off", is_template=False).count()
    expect(rows).to_have_count(off)
    page.screenshot(path=screenshots / "vm-list.png", full_page=True)

    # Open a running VM and power it off; follow its task to 100 %.
    running = VM.objects.filter(power_state="on").order_by("name").first()
    page.goto(f"/vms/{running.uuid}/")
    expect(page.get_by_role("heading", name=running.name)).to_be_visible()
    page.screenshot(path=screenshots / "vm-detail.png", full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Power Off", exact=True).click()
    page.get_by_role("link", name="follow the task").click()
    expect(page.locator("#task-panel .progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#task-panel .badge.status-succeeded")).to_be_visible()
    page.screenshot(path=screenshots / "task-detail.png", full_page=True)
    running.refresh_from_db()
    assert running.power_state == "off"

    # Select three powered-off VMs and power them on in one bulk task.
    page.goto("/vms/?power_state=off")
    boxes = page.locator("input[name=uuids]")
    chosen = [boxes.nth(i).get_attribute("value") for i in range(3)]
    for i in range(3):
        boxes.nth(i).check()
    expect(page.locator("#selected-count")).to_have_text("3 selected")
    page.get_by_label("Action", exact=True).select_option("power-on")
    page.get_by_role("button", name="Apply to VMs").click()
    expect(page.locator("#task-panel .badge.status-succeeded").first).to_be_visible()
    expect(page.get_by_role("heading", name="Children 3")).to_be_visible()
    assert set(VM.objects.filter(uuid__in=chosen).values_list("power_state", flat=True)) == {"on"}
    page.goto("/tasks/")
    page.screenshot(path=screenshots / "tasks.png", full_page=True)


def test_create_with_a_bad_value_shows_the_error_beside_the_field(page, seeded, screenshots):
    log_in_as(page, "admin-e2e")
    page.goto("/vms/new/")
    page.locator("#id_name").fill("too-big")
    page.locator("#id_memory_gib").fill("4096")
    page.get_by_role("button", name="Create VM").click()
    error = page.locator("#id_memory_gib-error")
    expect(error).to_contain_text("TiB of memory")
    # beside the field: inside the same field block as the memory input
    expect(page.locator(".field.has-error", has=page.locator("#id_memory_gib"))).to_contain_text("TiB of memory")
    page.screenshot(path=screenshots / "create-error.png", full_page=True)
    assert not VM.objects.filter(name="too-big").exists()


def test_token_made_in_the_browser_works_with_the_cli(page, seeded, live_server, screenshots):
    log_in_as(page, "admin-e2e")
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Token name").fill("cli-e2e")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token-value").inner_text()
    page.screenshot(path=screenshots / "settings-token.png", full_page=True)

    facet = Path(sys.executable).with_name("facet")
    command = [str(facet)] if facet.exists() else [sys.executable, "-m", "console.cli"]
    env = {**os.environ, "FACET_URL": live_server.url, "FACET_TOKEN": token, "XDG_CONFIG_HOME": str(screenshots)}
    result = subprocess.run([*command, "vm", "list", "search=web"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "web-00001" in result.stdout and "db-00003" not in result.stdout


def test_image_upload_shows_progress_then_the_hash_and_refuses_a_fake_iso(page, seeded, tmp_path, screenshots):
    import hashlib

    from console.models import Image
    from console.services.demo import demo_iso_bytes

    iso = tmp_path / "tools.iso"
    iso.write_bytes(demo_iso_bytes())
    fake = tmp_path / "fake.iso"
    fake.write_bytes(b"not an iso at all" * 100)
    log_in_as(page, "admin-e2e")
    page.goto("/images/")
    page.locator("#upload-form").get_by_label("Name").fill("uploaded-iso")
    page.get_by_label("Kind").select_option("iso")
    page.get_by_label("File").set_input_files(str(fake))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_contain_text("not an ISO 9660 image")
    assert not Image.objects.filter(name="uploaded-iso").exists()

    page.get_by_label("File").set_input_files(str(iso))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_contain_text(hashlib.sha256(iso.read_bytes()).hexdigest())
    expect(page.locator("#upload-progress")).to_have_attribute("aria-valuenow", "100")
    page.screenshot(path=screenshots / "images-upload.png", full_page=True)
    assert Image.objects.get(name="uploaded-iso").size_bytes == iso.stat().st_size


def test_a_bulk_action_reaches_what_the_page_shows_and_names_it_first(page, seeded, celery_processes, screenshots):
    """Issue 14 item 2: "No templates match" + "All 0 matching the filter" + delete deleted a running VM."""
    celery_processes.worker()
    log_in_as(page, "admin-e2e")
    running = VM.objects.filter(power_state="on", is_template=False).order_by("name").first()
    vms_before = VM.objects.filter(is_template=False).count()

    # A search on Templates that matches only an ordinary VM: nothing to act on, the whole-filter scope is off.
    page.goto("/templates/")
    page.get_by_label("Search").fill(running.name)
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page.get_by_role("heading", name="No templates match")).to_be_visible()
    expect(page.get_by_label("All 0 templates matching the filter")).to_be_disabled()
    page.screenshot(path=screenshots / "bulk-templates-none.png", full_page=True)

    # Every template, by the whole (empty) filter: a confirmation page names them, and them only.
    page.goto("/templates/")
    templates = sorted(VM.objects.filter(is_template=True).values_list("name", flat=True))
    page.get_by_label(f"All {len(templates)} templates matching the filter").check()
    page.get_by_label("Action", exact=True).select_option("delete")
    page.get_by_role("button", name="Apply to templates").click()
    expect(page.get_by_role("heading", name=f"Delete {len(templates)} templates?")).to_be_visible()
    expect(page.locator("ul.names li")).to_have_text(templates)
    page.screenshot(path=screenshots / "bulk-templates-confirm.png", full_page=True)
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", name="Templates")).to_be_visible()

    # Every VM on the VMs page, deleted: the count must be typed; a wrong one is not taken.
    page.goto("/vms/?page_size=100")
    page.locator("#select-page").check()
    page.get_by_label("Action", exact=True).select_option("delete")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Apply to VMs").click()
    expect(page.get_by_role("heading", name=f"Delete {vms_before} VMs?")).to_be_visible()
    expect(page.get_by_text(f"and {vms_before - 10} more.")).to_be_visible()
    page.get_by_label(f"Type {vms_before} to confirm").fill("3")
    page.get_by_role("button", name=f"Delete {vms_before} VMs").click()
    expect(page.get_by_role("heading", name=f"Delete {vms_before} VMs?")).to_be_visible()  # the browser held it
    page.screenshot(path=screenshots / "bulk-delete-type-count.png", full_page=True)
    assert not VM.objects.filter(power_state="deleting").exists()
    page.get_by_label(f"Type {vms_before} to confirm").fill(str(vms_before))
    page.get_by_role("button", name=f"Delete {vms_before} VMs").click()
    expect(page.get_by_role("heading", name=f"Children {vms_before}")).to_be_visible()
    page.screenshot(path=screenshots / "bulk-delete-task.png", full_page=True)
    reached = Task.objects.get(kind="vm.bulk").children.values_list("entity_uuid", flat=True)
    assert not VM.objects.filter(uuid__in=reached, is_template=True).exists() and len(reached) == vms_before
