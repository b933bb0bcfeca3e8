"""The sim driver's view into running VMs: a simulated serial console (a Debian-like login prompt that echoes
what is typed, so the demo has one) and plausible usage figures. The figures are cumulative counters computed
from the clock (each VM its own load curve, from its uuid), so two samples give smooth, repeatable rates and a
sample costs no state: 1,000 VMs are sampled in one query."""

import asyncio
import math
import time
import zlib

from ..models import SimDomain
from .base import DriverError
from .insight import CONSOLE_KINDS, ConsoleTarget, DomainCounters

BOOT_LOG = ("[    0.000000] Linux version 6.1.0-sim (Facet sim driver)\r\n"
            "[    1.204000] Run /sbin/init as init process\r\n"
            "[  OK  ] Reached target multi-user.target - Multi-User System.\r\n\r\n"
            "Debian GNU/Linux 12 {name} ttyS0\r\n\r\n")
GiB = 1024**3
# Bytes of output the simulated guest may have queued for a reader that does not read: past it, the guest's
# writes wait (a real UART waits for its FIFO the same way).
SIM_OUTPUT_QUEUE = 64
clock = time.time  # the instant the figures are of (tests set it to the sample's time)


def _phase(uuid) -> float:
    return (zlib.crc32(str(uuid).encode()) % 1000) / 1000 * 2 * math.pi


def _integral(base: float, swing: float, period: float, phase: float, t: float) -> float:
    """∫ base + swing·sin(2πt/period + phase) dt from 0 to t: a load that rises and falls, as a counter."""
    omega = 2 * math.pi / period
    return base * t - swing * (math.cos(omega * t + phase) - math.cos(phase)) / omega


def sim_counters(uuid, vcpus: int, memory_bytes: int, now: float) -> DomainCounters:
    phase = _phase(uuid)
    busy = _integral(0.25, 0.2, 900, phase, now)  # 5 % to 45 % of its vCPUs, over a quarter hour
    memory_share = 0.45 + 0.15 * math.sin(2 * math.pi * now / 3600 + phase)
    return DomainCounters(
        cpu_ns=int(busy * vcpus * 1e9), vcpus=vcpus,
        memory_used=int(memory_bytes * memory_share), memory_total=memory_bytes,
        disk_read=int(_integral(400_000, 300_000, 600, phase, now)),
        disk_write=int(_integral(250_000, 200_000, 420, phase + 1, now)),
        net_rx=int(_integral(120_000, 100_000, 300, phase + 2, now)),
        net_tx=int(_integral(60_000, 50_000, 360, phase + 3, now)))


class SimInsight:
    """Mixed into SimDriver."""

    def console_target(self, vm, kind: str) -> ConsoleTarget:
        if kind not in CONSOLE_KINDS:
            raise DriverError(f"VM {vm.name} has no {kind!r} console (there are {', '.join(CONSOLE_KINDS)})")
        if self.state(vm) != "on":
            raise DriverError(f"VM {vm.name} is not running: its console opens once it is powered on")
        if kind == "vnc":
            raise DriverError(f"VM {vm.name} is simulated and has no screen: use its serial console")
        return ConsoleTarget("sim")

    def serial_log(self, vm, limit: int) -> bytes:
        return BOOT_LOG.format(name=vm.hostname or vm.name).encode()[-limit:]

    def domain_counters(self, vms: list) -> dict:
        running = set(SimDomain.objects.filter(uuid__in=[vm.uuid for vm in vms], power_state="on")
                      .values_list("uuid", flat=True))
        now = clock()
        return {vm.uuid: sim_counters(vm.uuid, vm.vcpus, vm.memory_bytes, now) for vm in vms if vm.uuid in running}


class SimSerial:
    """A simulated guest on a serial line: `login:`, then a shell prompt; it echoes what is typed as a tty
    does. `yes` floods the line until Ctrl-C, like a guest gone mad. Output is read with `read()`; a reader
    that stops reading makes the guest wait, never grow a buffer."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.output: asyncio.Queue[bytes] = asyncio.Queue(SIM_OUTPUT_QUEUE)
        self.line = ""
        self.user = ""
        self.flood: asyncio.Task | None = None

    async def start(self) -> None:
        await self.output.put(f"\r\n{self.hostname} login: ".encode())

    async def read(self) -> bytes:
        return await self.output.get()

    async def write(self, data: bytes) -> None:
        for char in data.decode(errors="replace"):
            if char == "\x03":
                await self._interrupt()
            elif char in "\r\n":
                await self.output.put(b"\r\n")
                await self._enter(self.line.strip())
                self.line = ""
            elif char in "\x7f\b":
                if self.line:
                    self.line = self.line[:-1]
                    await self.output.put(b"\b \b")
            elif char.isprintable():
                self.line += char
                await self.output.put(char.encode())

    def close(self) -> None:
        if self.flood is not None:
            self.flood.cancel()

    def _prompt(self) -> bytes:
        return f"{self.user}@{self.hostname}:~# ".encode() if self.user else f"{self.hostname} login: ".encode()

    async def _enter(self, line: str) -> None:
        if not self.user:
            self.user = line or ""
            if self.user:
                await self.output.put(b"Linux 6.1.0-sim x86_64 (simulated by Facet)\r\n")
        elif line == "yes":
            self.flood = asyncio.ensure_future(self._flood())
            return
        elif line in ("exit", "logout"):
            self.user = ""
        elif line:
            await self.output.put(f"-bash: {line.split()[0]}: command not found\r\n".encode())
        await self.output.put(self._prompt())

    async def _flood(self) -> None:
        while True:
            await self.output.put(b"y\r\n" * 256)

    async def _interrupt(self) -> None:
        if self.flood is not None:
            self.flood.cancel()
            self.flood = None
        self.line = ""
        await self.output.put(b"^C\r\n" + self._prompt())
