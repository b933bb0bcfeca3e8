"""An administrator's first hour (issue 15), in Chromium: human words on every page, checked against the one
table of labels; the VM page updating itself; sizes refused before anything is written; the Docker host key
page; volume groups on the VM page and the Attach to picker; uploads and forms. Screenshots at 1280 and 900 px
go to test-output/e2e/."""

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from console.core.actors import Actor
from console.core.drivers import DriverError
from console.core.models import Task
from console.core.registry import registry
from console.models import VM, Image
from console.services import bulk, demo, vms
from console.services.power import POWER_LABELS
from containers.models import DockerHost, VolumeGroup
from containers.services import attachments, docker_hosts, volume_groups
from containers.services.targets import Target
from customization.services import library
from tests.browser import log_in_as
from tests.conftest import make_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
GiB = 1024**3
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# API words: a control labelled like an API action (`power-off`, `guest-tools-mount`), a task kind (`vm.clone`),
# a message naming a field by its API name (`size_bytes:`), or one of the API's own action words in any text.
API_LABEL = re.compile(r"^[a-z]+(-[a-z]+)+$|^[a-z]+(\.[a-z-]+)+$")
FIELD_PREFIX = re.compile(r"(^|\s)[a-z]+_[a-z_]+:")
TASK_KIND = re.compile(r"\b(vm|ngt|image|volume-group)\.[a-z][a-z.-]*\b")
TEMPLATE_SYNTAX = re.compile(r"\{[#%]")  # a template comment or tag that leaked onto the page ({{ key }} is help)
PRODUCT_NAMES = {"cloud-init"}  # spelled so by their makers


@pytest.fixture
def fleet(cluster, monkeypatch, run_tasks):
    """The demo VMs, a bulk power task, a create that failed and was undone, a volume group attached to a VM,
    a registered Docker host, a saved script; an Admin with a known password. Tasks run in-process."""
    monkeypatch.setattr("console.core.tasks.sending.send_all", lambda tasks: None)
    monkeypatch.setattr("console.core.tasks.sending.send", lambda task: None)
    demo.seed(6)
    admin = make_user("admin-e2e", "Admin")
    actor = Actor(user=admin)
    two_running = VM.objects.filter(is_template=False, power_state="on").values_list("pk", flat=True)[:2]
    bulk.request_bulk(actor, "power-off", VM.objects.filter(pk__in=list(two_running)))
    run_tasks()
    with monkeypatch.context() as patch:
        patch.setattr("console.core.drivers.sim.SimDriver.create", _refuse)
        vms.request_create_vm(actor, vms.VMSpec(name="doomed", vcpus=1, memory_bytes=GiB))
        run_tasks()
    volume_groups.request_create(actor, "data-1", GiB)
    run_tasks()
    web = VM.objects.filter(is_template=False).order_by("name").first()
    attachments.request_attach(actor, VolumeGroup.objects.get(name="data-1"), Target(vm=web))
    run_tasks()
    docker_hosts.register(actor, "edge-1")
    library.save_script(actor, name="hello", kind="cloud-init", content="#cloud-config\nhostname: hello\n")
    return web


def _refuse(self, vm):
    raise DriverError("the hypervisor refused: no room")


def both_widths(page, screenshots, name: str) -> None:
    page.screenshot(path=screenshots / f"{name}-1280.png", full_page=True)
    page.set_viewport_size({"width": 900, "height": 900})
    page.screenshot(path=screenshots / f"{name}-900.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


PAGE_WORDS = """() => {
  const main = document.querySelector("main").cloneNode(true);
  main.querySelectorAll("code, pre, kbd, script, style, template").forEach(e => e.remove());
  const controls = [...document.querySelectorAll(
      "main button, main select[name=action] option, main select[name=kind] option, main a.btn, main summary, " +
      "main legend, main th")]
    .filter(e => !e.closest("code, pre")).map(e => e.textContent.trim()).filter(Boolean);
  const titles = [...document.querySelectorAll("main [title]")].filter(e => !e.closest("code, pre")).map(e => e.title);
  return {text: main.innerText, controls, titles};
}"""


def walk(page, start: str, limit: int = 70) -> list[str]:
    """Every page reachable from the navigation and the pages' own links, one of each URL shape."""
    seen_shapes, queue, visited = set(), [start], []
    while queue and len(visited) < limit:
        url = queue.pop(0)
        shape = UUID.sub("{id}", urlsplit(url).path)
        if shape in seen_shapes:
            continue
        seen_shapes.add(shape)
        page.goto(url)
        visited.append(url)
        yield url
        links = page.eval_on_selector_all("nav a[href], main a[href]", "as => as.map(a => a.getAttribute('href'))")
        for href in links:
            parts = urlsplit(href)
            if parts.netloc or not href.startswith("/") or parts.query or href.endswith(".deb") or "/api/" in href:
                continue
            queue.append(parts.path)


def test_every_page_speaks_to_people_not_in_api_words(page, fleet, screenshots):
    log_in_as(page, "admin-e2e")
    problems = []
    pages = 0
    for url in walk(page, "/"):
        pages += 1
        words = page.evaluate(PAGE_WORDS)
        for label in words["controls"]:
            if API_LABEL.match(label) and label not in PRODUCT_NAMES:
                problems.append(f"{url}: control labelled {label!r}")
        for text in (words["text"], *words["titles"]):
            for pattern in (FIELD_PREFIX, TASK_KIND, TEMPLATE_SYNTAX):
                problems += [f"{url}: {match.group(0).strip()!r} in the text" for match in pattern.finditer(text)]
            problems += [f"{url}: {word!r} in the text" for word in [*POWER_LABELS, *registry.power_actions,
                                                                      *registry.bulk_actions] if
                         re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) and "-" in word]
    assert pages >= 15, f"only {pages} pages walked"
    assert problems == [], "\n".join(problems)


def test_labels_come_from_the_one_table(page, fleet, screenshots):
    log_in_as(page, "admin-e2e")
    running = VM.objects.filter(is_template=False, power_state="on").order_by("name").first()
    page.goto(f"/vms/{running.uuid}/")
    head = page.locator("#vm-head")
    for action in ("power-off", "shutdown", "reset", "reboot"):
        label, tooltip = POWER_LABELS[action]
        expect(head.get_by_role("button", name=label, exact=True)).to_have_attribute("title", tooltip)
    both_widths(page, screenshots, "vm-detail-labels")
    page.goto("/vms/")
    options = page.locator("select[name=action] option").all_inner_texts()
    assert options == [action.label for action in registry.bulk_actions.ordered()]
    page.goto("/tasks/")
    expect(page.get_by_role("link", name="Bulk Power Off")).to_be_visible()
    expect(page.get_by_role("link", name="Create VM").first).to_be_visible()
    kinds = page.locator("select[name=kind] option").all_inner_texts()
    assert "Clone VM" in kinds and "Guest Shut Down" in kinds and "Attach volume group" in kinds
    both_widths(page, screenshots, "tasks-labels")


def test_a_rolled_back_create_has_no_rerun_and_no_link_and_a_huge_disk_is_refused_beside_its_field(
        page, fleet, screenshots):
    log_in_as(page, "admin-e2e")
    doomed = Task.objects.get(kind="vm.create", entity_name="doomed")
    page.goto(f"/tasks/{doomed.uuid}/")
    panel = page.locator("#task-panel")
    expect(panel.get_by_text("doomed no longer exists")).to_be_visible()
    expect(panel.get_by_role("button", name="Rerun")).to_have_count(0)
    expect(panel.get_by_role("link", name="doomed")).to_have_count(0)
    both_widths(page, screenshots, "task-rolled-back")

    page.goto("/vms/new/")
    page.locator("#id_name").fill("huge")
    page.locator("#id_disks-0-size_gib").fill(str(60 * 1024))
    page.get_by_role("button", name="Create VM").click()
    expect(page.locator(".field.has-error", has=page.locator("#id_disks-0-size_gib"))).to_contain_text(
        "60 TiB is more than storage container default has free")
    both_widths(page, screenshots, "create-huge-disk")
    assert not VM.objects.filter(name="huge").exists()


def test_the_memory_field_steps_by_whole_gib(page, fleet):
    log_in_as(page, "admin-e2e")
    page.goto("/vms/new/")
    memory = page.locator("#id_memory_gib")
    memory.press("ArrowUp")
    expect(memory).to_have_value("3")
    memory.press("ArrowDown")
    memory.press("ArrowDown")
    expect(memory).to_have_value("1")


def test_docker_host_key_page_copy_reload_and_regenerate(page, fleet, screenshots):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in_as(page, "admin-e2e")
    page.goto("/docker-hosts/")
    register = page.locator("form[action$='/register/']")
    register.get_by_label("Name").fill("edge-2")
    register.get_by_role("button", name="Register").click()
    host = DockerHost.objects.get(name="edge-2")
    expect(page).to_have_url(re.compile(f"/docker-hosts/{host.uuid}/key/$"))
    key = page.locator("#docker-host-key").inner_text()
    assert key.startswith("facetdh_") and DockerHost.hash(key) == host.key_hash
    expect(page.get_by_role("link", name="download facet-volume-plugin.deb")).to_be_visible()
    page.locator("button[data-copy='#docker-host-key']").click()
    expect(page.locator("button[data-copy='#docker-host-key']")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == key
    both_widths(page, screenshots, "docker-host-key")
    page.reload()
    expect(page.locator("#docker-host-key")).to_have_text(key)  # a reload does not lose it

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Regenerate key").click()
    expect(page.locator("#docker-host-key")).not_to_have_text(key)
    new_key = page.locator("#docker-host-key").inner_text()
    host.refresh_from_db()
    assert host.key_hash == DockerHost.hash(new_key) != DockerHost.hash(key)
    assert docker_hosts.authenticate(key) is None and docker_hosts.authenticate(new_key) == host


def test_volume_groups_on_the_vm_page_and_the_attach_picker(page, fleet, screenshots, run_tasks):
    log_in_as(page, "admin-e2e")
    page.goto(f"/vms/{fleet.uuid}/")
    panel = page.locator("#volume-groups-panel")
    expect(panel.get_by_role("link", name="data-1")).to_be_visible()
    both_widths(page, screenshots, "vm-volume-groups")

    volume_groups.request_create(Actor.system(), "data-2", GiB)
    run_tasks()
    group = VolumeGroup.objects.get(name="data-2")
    target = VM.objects.filter(is_template=False).order_by("-name").first()
    page.goto(f"/volume-groups/{group.uuid}/")
    page.get_by_label("Find a VM or Docker host by name").fill(target.name[:6])
    choice = page.get_by_role("radio", name=f"{target.name} VM")
    expect(choice).to_be_visible()
    expect(page.locator("#attach-targets input[type=radio]")).to_have_count(
        VM.objects.filter(is_template=False, name__icontains=target.name[:6]).count())
    choice.check()
    both_widths(page, screenshots, "attach-picker")
    page.get_by_role("button", name="Attach", exact=True).click()
    expect(page.get_by_text("Task started: Attach volume group data-2")).to_be_visible()
    run_tasks()
    assert group.attachment.vm == target


def test_uploads_are_checked_before_the_file_goes_and_forms_keep_their_values(page, fleet, tmp_path, screenshots):
    empty = tmp_path / "empty.iso"
    empty.write_bytes(b"")
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4 * 1024 * 1024)
    log_in_as(page, "admin-e2e")
    page.goto("/images/")
    uploads = []
    page.on("request", lambda request: uploads.append(request.url) if "/images/upload/" in request.url else None)
    page.locator("#upload-form").get_by_label("Name").fill("fresh")
    page.get_by_label("File").set_input_files(str(empty))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_contain_text("empty.iso is empty (0 bytes)")
    existing = Image.objects.first().name
    page.locator("#upload-form").get_by_label("Name").fill(existing)
    page.get_by_label("File").set_input_files(str(disk))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_contain_text(f"Name: an image named '{existing}' already exists")
    both_widths(page, screenshots, "upload-duplicate")
    assert uploads == [] and not Task.objects.filter(kind="image.upload").exists()

    page.goto("/volume-groups/")
    form = page.locator("#create-volume-group")
    form.get_by_label("Name").fill("data-1")  # taken
    form.get_by_label("Size of each disk (GiB)").fill("7")
    form.get_by_label("Description").fill("kept after the error")
    form.get_by_role("button", name="Create").click()
    expect(form.locator(".field.has-error", has=page.locator("#id_name"))).to_contain_text("already exists")
    expect(form.get_by_label("Size of each disk (GiB)")).to_have_value("7")
    expect(form.get_by_label("Description")).to_have_value("kept after the error")
    both_widths(page, screenshots, "volume-group-form-error")
