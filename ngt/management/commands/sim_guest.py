"""manage.py sim_guest VM: the real agent as the guest of a simulated VM.

It reads the VM's tools ISO (with pycdlib) as the guest would see the disc, and bridges a real pty (the
guest's /dev/virtio-ports/org.facet.guest_tools.0) to the VM's channel socket, the unix socket QEMU would
listen on for the Guest Tools Service. `--tls` skips the serial port: the agent then calls the VIP."""

import asyncio
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pycdlib
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from console.models import VM
from console.services.vms import driver_for
from ngt.agent.config import FILES

READ_SIZE = 65536


def extract_config(iso_path: Path, directory: Path) -> None:
    """The ISO's config/ files into `directory`, as the guest reads them from the disc."""
    directory.mkdir(parents=True, exist_ok=True)
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        for name in FILES:
            data = io.BytesIO()
            iso.get_file_from_iso_fp(data, joliet_path=f"/config/{name}")
            (directory / name).write_bytes(data.getvalue())
    finally:
        iso.close()


class SerialBridge:
    """A pty's host side joined to a unix socket: bytes pass both ways while the service is connected, and
    are dropped while it is not, as on a virtio-serial port nobody opened on the host."""

    def __init__(self, socket_path: Path, host_side: int) -> None:
        self.socket_path, self.host_side = socket_path, host_side
        self.writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self.service_connected, path=str(self.socket_path))
        asyncio.get_running_loop().add_reader(self.host_side, self.from_guest)
        async with server:
            await server.serve_forever()

    def from_guest(self) -> None:
        data = os.read(self.host_side, READ_SIZE)
        if self.writer is not None:
            self.writer.write(data)

    async def service_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.writer is not None:
            writer.close()  # one host-side connection at a time, as QEMU's chardev allows
            return
        self.writer = writer
        try:
            while data := await reader.read(READ_SIZE):
                os.write(self.host_side, data)
        finally:
            self.writer = None
            writer.close()


class Command(BaseCommand):
    help = "Run the real Guest Tools agent for a simulated VM, over a pty bridged to its channel socket."

    def add_arguments(self, parser) -> None:
        parser.add_argument("vm", help="VM name or uuid")
        parser.add_argument("--tls", action="store_true", help="skip the serial port: talk TLS to the VIP")
        parser.add_argument("--heartbeat", default="10", help="seconds between heartbeats")

    def handle(self, *args, vm: str, tls: bool, heartbeat: str, **options) -> None:
        target = VM.objects.select_related("host").filter(name=vm).first() or VM.objects.filter(uuid=vm).first()
        if target is None:
            raise CommandError(f"no VM {vm}")
        guest = Path(settings.DATA_DIR) / "sim-guests" / str(target.uuid)
        cdrom = target.cdroms.filter(purpose="guest-tools").exclude(iso_path="").first()
        if cdrom is not None:  # else the agent talks with what it installed before
            extract_config(Path(cdrom.iso_path), guest / "media" / "config")
        host_side, guest_side = os.openpty()
        command = [sys.executable, "-m", "ngt.agent", "run", "--media", str(guest / "media"),
                   "--config-dir", str(guest / "etc"), "--state-dir", str(guest / "run"),
                   "--serial", "" if tls else os.ttyname(guest_side), "--heartbeat", heartbeat,
                   "--power-command", "true"]  # a simulated VM's power is the console's to change
        agent = subprocess.Popen(command)
        self.stdout.write(f"sim guest of {target.name}: agent {agent.pid}" + ("" if tls else " on serial"))
        try:
            if tls:
                agent.wait()
            else:
                asyncio.run(SerialBridge(driver_for(target).agent_channel_path(target), host_side).run())
        except KeyboardInterrupt:
            pass
        finally:
            agent.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.wait(10)
            os.close(host_side)
            os.close(guest_side)
