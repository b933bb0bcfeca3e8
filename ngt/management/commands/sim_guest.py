"""manage.py sim_guest VM: the real agent as the guest of a simulated VM.

It reads the VM's tools ISO (with pycdlib) as the guest would see the disc, following it as the console
mounts, remounts and ejects it, and bridges a real pty (the guest's /dev/virtio-ports/org.facet.guest_tools.0)
to the VM's channel socket, the unix socket QEMU would listen on for the Guest Tools Service. `--tls` skips
the serial port: the agent then calls the VIP."""

import asyncio
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import tty
from pathlib import Path

import pycdlib
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from console.core.drivers import driver_for
from console.models import VM
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


def stop(process: subprocess.Popen) -> None:
    """Terminate a child, killing it when it does not end within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class MediaFollower(threading.Thread):
    """The guest's view of its Guest Tools CD-ROM: `media/config` holds the files of the ISO in the drive
    (a real directory, since the agent follows no link on a disc; swapped in two renames when another is
    mounted) and is gone while the drive is empty, as a disc the agent scans every few seconds."""

    def __init__(self, vm: VM, media: Path, interval: float = 2.0) -> None:
        super().__init__(daemon=True, name="media-follower")
        self.vm, self.media, self.interval = vm, media, interval
        self.inserted = None
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while True:
                self.follow()
                if self.stopped.wait(self.interval):
                    return
        finally:
            connection.close()

    def follow(self) -> None:
        cdrom = self.vm.cdroms.filter(purpose="guest-tools").exclude(iso_path="").first()
        inserted = cdrom.iso_path if cdrom is not None else None
        if inserted == self.inserted:
            return
        disc, incoming, outgoing = self.media / "config", self.media / ".config-new", self.media / ".config-old"
        for stale in (incoming, outgoing):
            shutil.rmtree(stale, ignore_errors=True)
        if inserted is not None:
            try:
                extract_config(Path(inserted), incoming)
            except (OSError, pycdlib.pycdlibexception.PyCdlibException):
                return  # ejected and deleted while read: the next round sees the empty drive
        if disc.exists():
            os.replace(disc, outgoing)
        if inserted is not None:
            os.replace(incoming, disc)
        shutil.rmtree(outgoing, ignore_errors=True)
        self.inserted = inserted


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


def power_command(guest: Path, vm: VM) -> Path:
    """The program the agent runs for the guest's own shutdown or reboot (`PROGRAM shutdown|reboot`): it
    changes the simulated VM's power as the guest's OS would (`manage.py sim_guest_power`)."""
    script = guest / "power"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} "
                      f"{shlex.quote(str(Path(settings.BASE_DIR) / 'manage.py'))} sim_guest_power {vm.uuid} \"$1\"\n")
    script.chmod(0o700)
    return script


class Command(BaseCommand):
    help = "Run the real Guest Tools agent for a simulated VM, over a pty bridged to its channel socket."

    def add_arguments(self, parser) -> None:
        parser.add_argument("vm", help="VM name or uuid")
        parser.add_argument("--tls", action="store_true", help="skip the serial port: talk TLS to the VIP")
        parser.add_argument("--heartbeat", default="10", help="seconds between heartbeats")
        parser.add_argument("--scan", default="5", help="seconds between the agent's looks at the disc (a real "
                            "guest's agent takes 30)")

    def handle(self, *args, vm: str, tls: bool, heartbeat: str, scan: str, **options) -> None:
        target = VM.objects.select_related("host").filter(name=vm).first() or VM.objects.filter(uuid=vm).first()
        if target is None:
            raise CommandError(f"no VM {vm}")
        guest = Path(settings.DATA_DIR) / "sim-guests" / str(target.uuid)
        (guest / "media").mkdir(parents=True, exist_ok=True)
        follower = MediaFollower(target, guest / "media")
        follower.follow()  # the disc in the drive now, before the agent's first scan
        follower.start()
        host_side, guest_side = os.openpty()
        tty.setraw(guest_side)  # a virtio-serial port echoes nothing, even before the agent opens it
        command = [sys.executable, "-m", "ngt.agent", "run", "--media", str(guest / "media"),
                   "--config-dir", str(guest / "etc"), "--state-dir", str(guest / "run"),
                   "--serial", "" if tls else os.ttyname(guest_side), "--heartbeat", heartbeat,
                   # The guest's own /run/cloud-init (where a test writes what cloud-init would), never this
                   # machine's.
                   "--cloud-init-dir", str(guest / "cloud-init"),
                   "--scan", scan, "--power-command", str(power_command(guest, target))]
        # From the console's own tree: `-m ngt.agent` then runs the agent of the code this console runs, not
        # whichever copy of the package the interpreter would find first.
        agent = subprocess.Popen(command, cwd=settings.BASE_DIR)
        # Stopped (by sim_guests when the VM powers off), the agent goes too: left alone it would find its
        # serial port gone and link again over TLS, a guest outliving its VM.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.stdout.write(f"sim guest of {target.name}: agent {agent.pid}" + ("" if tls else " on serial"))
        try:
            if tls:
                agent.wait()
            else:
                asyncio.run(SerialBridge(driver_for(target).agent_channel_path(target), host_side).run())
        except KeyboardInterrupt:
            pass
        finally:
            follower.stopped.set()
            stop(agent)
            os.close(host_side)
            os.close(guest_side)
