"""Browser consoles over real websockets: the console's ASGI application under a real uvicorn on loopback, a
real websocket client, the sim driver's simulated serial console (the real-QEMU screen and serial port are in
tests/integration/test_qemu_console.py)."""

import asyncio
import time

import pytest
import websockets
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from console.core.models import AuditEvent
from console.models import VM, ConsoleSession, Host
from tests.realparts import asgi_server as serve_asgi
from tests.realparts import run_coroutine

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def asgi_server(transactional_db):
    from console.asgi import application

    with serve_asgi(application) as address:
        yield address


def ticket_url(user: User, vm: VM, kind: str = "serial", server: str = "") -> str:
    client = Client()
    client.force_login(user)
    response = client.post(reverse("vm-console-ticket", args=[vm.uuid]), {"kind": kind})
    assert response.status_code == 200, response.content
    url = response.json()["url"]
    return url.replace("ws://testserver", f"ws://{server}") if server else url


async def _read_until(connection, text: bytes, timeout: float = 5) -> bytes:
    seen = b""
    async with asyncio.timeout(timeout):
        while text not in seen:
            seen += await connection.recv()
    return seen


def run(coroutine):
    return run_coroutine(coroutine)


ORIGIN = {"origin": "http://127.0.0.1:8000"}


def test_an_operator_logs_in_on_the_sim_serial_console_and_the_session_is_audited(asgi_server, running_vm, operator):
    url = ticket_url(operator, running_vm, server=asgi_server)

    async def session():
        async with websockets.connect(url, **ORIGIN) as connection:
            scrollback = await _read_until(connection, b"login: ")
            await connection.send(b"root\r")
            echoed = await _read_until(connection, b":~# ")
            await connection.send(b"uptime\r")
            answer = await _read_until(connection, b"command not found")
        return scrollback, echoed, answer

    scrollback, echoed, answer = run(session())
    assert b"Debian GNU/Linux 12" in scrollback  # the domain's log, as scrollback
    assert echoed.startswith(b"root") and b"root@web-1:~# " in echoed
    assert b"uptime" in answer
    deadline = time.monotonic() + 5
    while not ConsoleSession.objects.filter(closed_at__isnull=False).exists():
        assert time.monotonic() < deadline, "the session was not closed"
        time.sleep(0.05)
    session_row = ConsoleSession.objects.get()
    assert (session_row.username, session_row.kind, session_row.vm_id) == ("oscar", "serial", running_vm.pk)
    assert session_row.opened_at and session_row.closed_at and session_row.seconds >= 0
    actions = list(AuditEvent.objects.filter(entity_uuid=running_vm.uuid, action__startswith="vm.console")
                   .order_by("time").values_list("action", "username"))
    assert actions == [("vm.console.open", "oscar"), ("vm.console.close", "oscar")]
    assert "seconds" in AuditEvent.objects.get(action="vm.console.close").detail


def _refusal(url: str, headers: dict | None = None) -> tuple[int, str]:
    async def attempt():
        async with websockets.connect(url, **(headers or ORIGIN)) as connection:
            try:
                await asyncio.wait_for(connection.recv(), 5)
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("the console opened")

    return run(attempt())


def test_a_reused_ticket_is_refused(asgi_server, running_vm, operator):
    url = ticket_url(operator, running_vm, server=asgi_server)

    async def first():
        async with websockets.connect(url, **ORIGIN) as connection:
            await _read_until(connection, b"login: ")

    run(first())
    assert _refusal(url) == (4403, "this console ticket was used already: open the console again")


def test_an_expired_ticket_is_refused(asgi_server, running_vm, operator, settings):
    settings.FACET_CONSOLE_TICKET_SECONDS = 1
    url = ticket_url(operator, running_vm, server=asgi_server)
    time.sleep(2.1)  # the signer counts whole seconds
    assert _refusal(url) == (4403, "the console ticket has expired: open the console again")


def test_a_forged_ticket_or_one_for_another_console_is_refused(asgi_server, running_vm, operator):
    url = ticket_url(operator, running_vm, server=asgi_server)
    assert _refusal(url.replace("/serial/", "/vnc/"))[0] == 4403
    assert _refusal(url.split("?")[0] + "?ticket=forged")[1] == "not a console ticket"


def test_a_viewer_gets_no_ticket_and_no_console(client, running_vm, viewer):
    client.force_login(viewer)
    response = client.post(reverse("vm-console-ticket", args=[running_vm.uuid]), {"kind": "serial"})
    assert response.status_code == 403
    assert "Operator or Admin" in response.json()["detail"]
    page = client.get(reverse("vm-console", args=[running_vm.uuid])).content.decode()
    assert "console-refused" in page and "vm_console.js" not in page
    assert not ConsoleSession.objects.exists()


def test_a_ticket_of_a_user_demoted_meanwhile_is_refused(asgi_server, running_vm, operator):
    url = ticket_url(operator, running_vm, server=asgi_server)
    operator.groups.clear()
    assert _refusal(url)[0] == 4403


def test_a_websocket_from_another_site_is_refused(asgi_server, running_vm, operator):
    url = ticket_url(operator, running_vm, server=asgi_server)
    with pytest.raises(websockets.InvalidStatus) as refused:
        run(websockets.connect(url, origin="https://evil.example").__aenter__())
    assert refused.value.response.status_code == 403
    assert ConsoleSession.objects.get().opened_at is None  # the ticket was not spent


def test_a_vm_of_a_host_that_is_down_is_refused_cleanly(asgi_server, running_vm, operator):
    Host.objects.filter(pk=running_vm.host_id).update(driver_uri="test:///nonexistent/host.xml")
    url = ticket_url(operator, running_vm, server=asgi_server)
    code, reason = _refusal(url)
    assert code == 4502 and reason.startswith("cannot reach the console")
    assert ConsoleSession.objects.get().close_reason.startswith("cannot reach the console")


def test_a_powered_off_vm_gets_no_ticket(client, vm, operator):
    client.force_login(operator)
    response = client.post(reverse("vm-console-ticket", args=[vm.uuid]), {"kind": "serial"})
    assert response.status_code == 409 and "power it on" in response.json()["detail"]


def test_an_idle_console_is_closed(asgi_server, running_vm, operator, settings):
    settings.FACET_CONSOLE_IDLE_SECONDS = 1
    url = ticket_url(operator, running_vm, server=asgi_server)

    async def idle():
        async with websockets.connect(url, **ORIGIN) as connection:
            try:
                async with asyncio.timeout(8):
                    while True:
                        await connection.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code, closed.rcvd.reason

    assert run(idle()) == (4408, "closed after 1 s without input")


async def _echo_seconds(url: str) -> float:
    """How long a second console takes to echo a line, while the first is being flooded."""
    async with websockets.connect(url, **ORIGIN) as connection:
        await _read_until(connection, b"login: ")
        started = time.monotonic()
        await connection.send(b"root\r")
        await _read_until(connection, b":~# ")
        return time.monotonic() - started


def test_a_flooding_guest_is_held_to_the_serial_rate_and_slows_no_other_console(
        asgi_server, running_vm, operator, settings):
    settings.FACET_CONSOLE_SERIAL_RATE = 64 * 1024
    flooded, other = (ticket_url(operator, running_vm, server=asgi_server) for _ in range(2))

    async def flood():
        async with websockets.connect(flooded, **ORIGIN) as connection:
            await _read_until(connection, b"login: ")
            await connection.send(b"root\ryes\r")
            await _read_until(connection, b"y\r\n")
            received, started = 0, time.monotonic()
            echo = asyncio.ensure_future(_echo_seconds(other))
            while time.monotonic() - started < 3:
                received += len(await connection.recv())
            return received / (time.monotonic() - started), await echo

    rate, echo_seconds = run(flood())
    assert 16 * 1024 < rate < 2 * 64 * 1024  # the bucket's first second, then the rate
    assert echo_seconds < 1


def test_a_browser_that_stops_reading_is_cut_off_and_slows_no_other_console(
        asgi_server, running_vm, operator, settings):
    settings.FACET_CONSOLE_SERIAL_RATE = 64 * 1024 * 1024
    settings.FACET_CONSOLE_SEND_TIMEOUT_SECONDS = 1
    stalled, other = (ticket_url(operator, running_vm, server=asgi_server) for _ in range(2))

    async def stall():
        # A client that never reads: the library queues at most 4 messages, then leaves the rest in the socket.
        # Uncompressed, so that `yes` fills the socket buffers in a moment (deflated it is ~1,000 times smaller).
        async with websockets.connect(stalled, max_queue=4, compression=None, **ORIGIN) as connection:
            await _read_until(connection, b"login: ")
            await connection.send(b"root\ryes\r")
            echo_seconds = await _echo_seconds(other)
            deadline = time.monotonic() + 30
            while not await asyncio.to_thread(
                    ConsoleSession.objects.filter(close_reason="the browser stopped reading the console").exists):
                assert time.monotonic() < deadline, "the stalled console was not cut off"
                await asyncio.sleep(0.2)
            return echo_seconds

    assert run(stall()) < 1
