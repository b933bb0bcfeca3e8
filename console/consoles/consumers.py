"""The websocket of one browser console. It opens only with a fresh ticket (tickets.py), then carries bytes
both ways between the browser and the VM's console on its hypervisor host, until either side ends, the browser
sends nothing for FACET_CONSOLE_IDLE_SECONDS, or the browser stops reading for FACET_CONSOLE_SEND_TIMEOUT_SECONDS.

Buffers stay bounded: the guest is read only as fast as the browser takes it (a send waits for the
websocket's write buffer to drain), the serial port at most FACET_CONSOLE_SERIAL_RATE bytes a second (a guest
flooding it waits, as on a real UART, and slows nobody else), and what the browser sends is written to the
guest before the next message is read. Close codes: 4403 refused (ticket, role), 4502 the VM's console cannot
be reached, 4408 idle or not reading, 1000 the console ended."""

import asyncio
import time
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import close_old_connections

from console.core.drivers import DriverError, driver_for
from console.core.errors import ServiceError

from .guest_lines import open_line
from .tickets import Refused, close_session, redeem_ticket

OPEN_TIMEOUT_SECONDS = 10
SCROLLBACK_BYTES = 64 * 1024


def _reason(text: str) -> str:
    """A websocket close reason: at most 123 bytes of UTF-8."""
    return text.encode()[:123].decode(errors="ignore")


def _driver_call(function):
    """Run a driver call in a thread of its own (a slow hypervisor holds up no other console), closing the
    database connection the thread used."""
    def call():
        try:
            return function()
        finally:
            close_old_connections()
    return sync_to_async(call, thread_sensitive=False)()


class ConsoleConsumer(AsyncWebsocketConsumer):
    session = None
    line = None
    ended = False

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.kind = kwargs["kind"]
        ticket = (parse_qs(self.scope.get("query_string", b"").decode()).get("ticket") or [""])[0]
        # noVNC asks for the "binary" subprotocol; the serial console asks for none.
        await self.accept("binary" if "binary" in self.scope.get("subprotocols", []) else None)
        try:
            self.session = await database_sync_to_async(redeem_ticket)(ticket, kwargs["uuid"], self.kind)
        except Refused as refusal:
            await self.close(code=4403, reason=_reason(str(refusal.errors["detail"][0])))
            return
        vm = self.session.vm
        try:
            driver = driver_for(vm)
            target = await asyncio.wait_for(_driver_call(lambda: driver.console_target(vm, self.kind)),
                                            OPEN_TIMEOUT_SECONDS)
            scrollback = b""
            if self.kind == "serial":
                scrollback = await _driver_call(lambda: driver.serial_log(vm, SCROLLBACK_BYTES))
            self.line = await asyncio.wait_for(open_line(target, vm.hostname or vm.name), OPEN_TIMEOUT_SECONDS)
        except (DriverError, ServiceError, OSError, TimeoutError) as exc:
            message = str(exc) if not isinstance(exc, TimeoutError) else f"the host of {vm.name} did not answer"
            await self._end(4502, f"cannot reach the console: {message}")
            return
        self.last_input = time.monotonic()
        if scrollback:
            await self.send(bytes_data=scrollback)
        self.tasks = [asyncio.ensure_future(self._guest_to_browser()), asyncio.ensure_future(self._watch_idle())]

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.line is None or self.ended:
            return
        self.last_input = time.monotonic()
        try:
            await self.line.write(bytes_data if bytes_data is not None else text_data.encode())
        except OSError:
            await self._end(1000, "the VM's console closed")

    async def disconnect(self, code) -> None:
        await self._finish("the browser closed the console")

    async def _guest_to_browser(self) -> None:
        rate = settings.FACET_CONSOLE_SERIAL_RATE if self.kind == "serial" else None
        allowance, checked = float(rate or 0), time.monotonic()
        while True:
            try:
                data = await self.line.read()
            except OSError:
                data = b""
            if not data:
                await self._end(1000, "the VM's console closed (did the VM stop?)")
                return
            try:
                await asyncio.wait_for(self.send(bytes_data=data), settings.FACET_CONSOLE_SEND_TIMEOUT_SECONDS)
            except TimeoutError:
                await self._end(4408, "the browser stopped reading the console")
                return
            if rate:  # a token bucket: past the rate, stop reading until the allowance is back
                now = time.monotonic()
                allowance = min(float(rate), allowance + (now - checked) * rate) - len(data)
                checked = now
                if allowance < 0:
                    await asyncio.sleep(-allowance / rate)

    async def _watch_idle(self) -> None:
        idle = settings.FACET_CONSOLE_IDLE_SECONDS
        while True:
            await asyncio.sleep(min(idle, 5))
            if time.monotonic() - self.last_input > idle:
                await self._end(4408, f"closed after {idle:g} s without input")
                return

    async def _end(self, code: int, reason: str) -> None:
        await self._finish(reason)
        await self.close(code=code, reason=_reason(reason))

    async def _finish(self, reason: str) -> None:
        """End the session once: stop the pumps, let go of the guest's console, write the audit."""
        if self.ended:
            return
        self.ended = True
        current = asyncio.current_task()
        for task in getattr(self, "tasks", []):
            if task is not current:
                task.cancel()
        if self.line is not None:
            self.line.close()
        if self.session is not None:
            await database_sync_to_async(close_session)(self.session, reason)
