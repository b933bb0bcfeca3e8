"""The browser console and the CPU chart on a real guest: one Debian VM on QEMU (tests/guest_image.py), the
console's pages and websockets under a real uvicorn, Chromium. The serial console shows the guest's login
prompt and echoes what is typed, the VNC canvas shows the guest's screen (compared with a blank canvas), a
Viewer and a reused ticket are refused, and a CPU burner the #cloud-config installed makes the CPU figures
and chart rise. Screenshots in test-output/integration/."""

import re
import time
from datetime import timedelta

import pytest
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.utils import timezone

from console.core.drivers import get_driver
from console.core.models import Task
from console.core.tasks import sending
from console.models import VM, ConsoleSession, MetricSample
from console.services import metrics, power, vms
from customization.services.lifecycle import CustomizationRequest
from tests.conftest import make_user
from tests.guest_image import ensure_guest_image
from tests.integration.conftest import cluster_image, domain_name, serial_console
from tests.realparts import asgi_server, wait_for

pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
GiB = 1024**3
BOOT_SECONDS = 300  # TCG on two busy cores: about 1.5 minutes when the machine is quiet
LOGIN_SECONDS = 180
# Percentage points the burner must add: QEMU's TCG thread gets what the host's cores spare (two, shared here).
RISE = 15
PASSWORD = "console-test"
# A root password for the serial login, and a CPU burner for the chart (started from the serial console, so
# the idle figures come first).
CLOUD_CONFIG = f"""\
#cloud-config
chpasswd:
  expire: false
  list: |
    root:{PASSWORD}
ssh_pwauth: false
write_files:
  - path: /usr/local/bin/burn
    permissions: "0755"
    content: |
      #!/bin/sh
      nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &
"""


def _run(task: Task, run_tasks) -> None:
    run_tasks()
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.error


@pytest.fixture
def console_site(transactional_db):
    """Pages, static files (noVNC, xterm.js) and websockets, all from one uvicorn, as behind a reverse proxy."""
    from channels.routing import ProtocolTypeRouter

    from console import asgi

    application = ProtocolTypeRouter({"http": ASGIStaticFilesHandler(asgi.django_application),
                                      "websocket": asgi.application.application_mapping["websocket"]})
    with asgi_server(application) as address:
        yield f"http://{address}"


def _log_in(browser, site: str, username: str):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=site)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site}/")
    return page


def _terminal_text(page) -> str:
    return page.locator("#terminal .xterm-rows").inner_text()


def _retry_login(page) -> bool:
    """After a refused login (the password not set yet), the prompt comes back: log in again."""
    lines = [line for line in _terminal_text(page).splitlines() if line.strip()]
    if lines and lines[-1].rstrip().endswith("login:"):
        page.keyboard.type("root\n")
        time.sleep(2)
        page.keyboard.type(f"{PASSWORD}\n")
    return False


def _cpu(vm: VM) -> float | None:
    return MetricSample.objects.filter(subject=vm.uuid, resolution=metrics.RAW).latest("at_ms").cpu_percent


def test_console_in_chromium_and_the_cpu_chart_on_a_real_guest(
        qemu_cluster, console_site, browser, screenshots, actor, run_tasks, monkeypatch):
    monkeypatch.setattr(sending, "send", lambda task: None)  # run_tasks runs them here
    make_user("oscar-console", "Operator")
    make_user("vera-console", "Viewer")
    image = cluster_image(qemu_cluster, ensure_guest_image(), "debian-12")
    spec = vms.VMSpec(name=domain_name("console"), vcpus=1, memory_bytes=GiB, image=image,
                      options={"customization": CustomizationRequest(content=CLOUD_CONFIG)})
    create = vms.request_create_vm(actor, spec)
    _run(create, run_tasks)
    vm = VM.objects.select_related("host").get(uuid=create.entity_uuid)
    _run(power.request_power(actor, vm, "power-on"), run_tasks)
    driver = get_driver(vm.host.driver_uri)
    try:
        page = _log_in(browser, console_site, "oscar-console")
        page.goto(f"/vms/{vm.uuid}/console/")
        # The screen: noVNC's canvas shows the guest's screen; compared with a blank canvas of its size.
        page.wait_for_selector("#screen canvas")
        wait_for(lambda: "Connected" in page.locator("#vnc-status").inner_text(), 30, "noVNC to connect")
        wait_for(lambda: page.evaluate(DIFFERENT_PIXELS) > 500, 60, "the guest's screen on the canvas")
        page.locator("#screen").screenshot(path=screenshots / "console-vnc.png")
        assert page.evaluate(BLANK_CANVAS_DIFFERENT_PIXELS) == 0  # the comparison: a blank canvas has none
        # The serial console: the guest's login prompt, and the echo of what is typed.
        page.locator("#terminal").click()
        wait_for(lambda: "login:" in _terminal_text(page) or page.keyboard.press("Enter"), BOOT_SECONDS,
                 "the login prompt in the serial console", interval=5)
        # cloud-init's last line prints over whatever is being typed (the echo of "roo", its line, then "t"):
        # typed only once it is out (read from the domain's serial log), at a fresh prompt.
        wait_for(lambda: re.search(r"Cloud-init v\. \S+ finished", serial_console(vm)), BOOT_SECONDS,
                 "cloud-init to finish", interval=2)
        page.keyboard.press("Enter")
        wait_for(lambda: _terminal_text(page).rstrip().endswith("login:"), 30, "a fresh login prompt")
        page.keyboard.type("root\n")
        wait_for(lambda: "Password:" in _terminal_text(page), 30, "the password prompt")
        # The guest's echo of what was typed, then its question (cloud-init's last words may print after the
        # prompt, and the echo then starts a line of its own).
        assert re.search(r"root\s*\n?\s*Password:", _terminal_text(page))
        page.keyboard.type(f"{PASSWORD}\n")
        # cloud-init sets the password a little after the prompt shows: until then the login is refused.
        wait_for(lambda: ":~#" in _terminal_text(page) or _retry_login(page), LOGIN_SECONDS, "the shell prompt",
                 interval=10)
        page.keyboard.type("echo typed-in-the-browser\n")
        wait_for(lambda: _terminal_text(page).count("typed-in-the-browser") >= 2, 15, "the command's echo and output")
        page.locator("#serial-card").screenshot(path=screenshots / "console-serial.png")
        page.screenshot(path=screenshots / "console-page.png")

        # A reused ticket: the second websocket with the same ticket is closed with 4403.
        assert page.evaluate(REUSE_TICKET) == [4403, "this console ticket was used already: open the console again"]

        # The CPU figures: idle first, then the burner the #cloud-config installed.
        start = timezone.now()
        metrics.sample_host(vm.host)
        time.sleep(10)
        metrics.sample_host(vm.host)
        idle = _cpu(vm)
        page.keyboard.type("burn\n")
        figures = [idle]

        def risen() -> bool:
            time.sleep(10)
            metrics.sample_host(vm.host)
            figures.append(_cpu(vm) or 0)
            return figures[-1] > max(2 * idle, idle + RISE)

        try:
            wait_for(risen, 60, "the CPU to rise")
        finally:
            print(f"CPU % of {vm.name}, idle then burning, every 10 s: {[round(f or 0, 1) for f in figures]}")
        page.goto(f"/vms/{vm.uuid}/")
        cpu_chart = page.locator('figure[data-chart="CPU"]')
        cpu_chart.wait_for()
        assert cpu_chart.locator("path.series").count() >= 1
        page.locator("#vm-performance").screenshot(path=screenshots / "performance-cpu.png")
        series = metrics.series(vm.uuid, start - timedelta(seconds=1), 20)
        assert max(v for v in series.figures["cpu_percent"] if v is not None) > max(2 * idle, idle + RISE)
        page.context.close()

        # A Viewer: no console, and no ticket.
        viewer_page = _log_in(browser, console_site, "vera-console")
        viewer_page.goto(f"/vms/{vm.uuid}/console/")
        assert "Operator or Admin" in viewer_page.locator("#console-refused").inner_text()
        assert viewer_page.evaluate(VIEWER_TICKET) == 403
        viewer_page.screenshot(path=screenshots / "console-viewer.png")
        viewer_page.context.close()
        sessions = ConsoleSession.objects.filter(vm=vm)
        assert {s.username for s in sessions} == {"oscar-console"} and sessions.filter(kind="vnc").exists()
    except AssertionError:
        print(f"--- serial console of {vm.name}\n{serial_console(vm)[-6000:]}")
        raise
    finally:
        if driver.state(vm) == "on":
            driver.power(vm, "power-off")


# Pixels of noVNC's canvas that differ from its first pixel (a blank canvas has none).
DIFFERENT_PIXELS = """() => {
  const canvas = document.querySelector('#screen canvas');
  if (!canvas || !canvas.width) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let different = 0;
  for (let i = 4; i < data.length; i += 4) {
    if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]) different++;
  }
  return different;
}"""
BLANK_CANVAS_DIFFERENT_PIXELS = "() => { const c = document.createElement('canvas'); c.width = 720; c.height = 400; " \
    "document.body.append(c); const data = c.getContext('2d').getImageData(0, 0, 720, 400).data; " \
    "let n = 0; for (let i = 4; i < data.length; i += 4) if (data[i + 3] !== data[3]) n++; c.remove(); return n; }"
REUSE_TICKET = """async () => {
  const root = document.getElementById('consoles');
  const response = await fetch(root.dataset.ticketUrl, {method: 'POST', headers: {'X-CSRFToken': root.dataset.csrf,
    'Content-Type': 'application/x-www-form-urlencoded'}, body: 'kind=serial'});
  const url = (await response.json()).url;
  const open = (u) => new Promise((resolve) => {
    const socket = new WebSocket(u);
    socket.onopen = () => setTimeout(() => socket.close(), 300);
    socket.onclose = (event) => resolve([event.code, event.reason]);
  });
  await open(url);
  return await open(url);
}"""
VIEWER_TICKET = """async () => {
  const csrf = document.cookie.split('; ').find((c) => c.startsWith('csrftoken=')).split('=')[1];
  const response = await fetch(location.pathname + 'ticket/', {method: 'POST', headers: {'X-CSRFToken': csrf,
    'Content-Type': 'application/x-www-form-urlencoded'}, body: 'kind=serial'});
  return response.status;
}"""
