"""The hypervisor side of a console, as one shape whatever carries it: `read()` the guest's next bytes (b"" at
its end), `write()` what the browser sent, `close()`. A VNC screen is QEMU's unix socket, a serial port its
pseudo-terminal, the sim driver's serial console a simulated guest in this process."""

import asyncio
import contextlib
import os
import termios
from pathlib import Path

from console.core.drivers.insight import ConsoleTarget
from console.core.drivers.sim_insight import SimSerial

CHUNK = 64 * 1024


class SocketLine:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self) -> bytes:
        return await self.reader.read(CHUNK)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class TtyLine:
    """QEMU's serial pseudo-terminal, opened without becoming our controlling terminal. QEMU set it raw; we
    make sure, so nothing here echoes or rewrites what the guest and the browser exchange."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        attributes = termios.tcgetattr(self.fd)
        attributes[0] = attributes[1] = attributes[3] = 0  # no input, output or local processing
        attributes[2] = (attributes[2] & ~termios.CSIZE) | termios.CS8 | termios.CREAD
        termios.tcsetattr(self.fd, termios.TCSANOW, attributes)
        self.loop = asyncio.get_running_loop()

    async def read(self) -> bytes:
        readable = self.loop.create_future()
        self.loop.add_reader(self.fd, lambda: readable.done() or readable.set_result(None))
        try:
            await readable
        finally:
            self.loop.remove_reader(self.fd)
        try:
            return os.read(self.fd, CHUNK)
        except BlockingIOError:
            return await self.read()
        except OSError:  # EIO: QEMU closed its side (the VM stopped)
            return b""

    async def write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.fd, data):]
            except BlockingIOError:
                await asyncio.sleep(0.01)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class SimLine:
    def __init__(self, hostname: str) -> None:
        self.guest = SimSerial(hostname)

    async def read(self) -> bytes:
        return await self.guest.read()

    async def write(self, data: bytes) -> None:
        await self.guest.write(data)

    def close(self) -> None:
        self.guest.close()


async def open_line(target: ConsoleTarget, hostname: str):
    if target.transport == "unix":
        return SocketLine(*await asyncio.open_unix_connection(str(target.path), limit=CHUNK))
    if target.transport == "tty":
        return TtyLine(target.path)
    line = SimLine(hostname)
    await line.guest.start()
    return line
