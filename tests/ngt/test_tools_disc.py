"""The tools ISO as a guest meets it: a real block device labelled FACET_TOOLS (a loop device over the ISO
file here, as the guest kernel sees the CD-ROM) found without udev and mounted read-only by the agent, and
the agent installed from the disc's installer/linux/ and run with the system's python3.

This machine's kernel has no iso9660 driver: where it lacks one, the disc's files are read with pycdlib
instead of mounted (the QEMU guest test mounts the real CD-ROM)."""

import contextlib
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import pycdlib
import pytest

from ngt.agent import config
from ngt.models import VMCertificate
from ngt.services import guest_tools
from tests.ngt.test_agent_packaging import INSTALLED, run_agent
from tests.ngt.test_services import mount, tools_iso

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"),
                       reason="loop devices and mount need root and util-linux"),
]


@contextlib.contextmanager
def loop_device(image: Path):
    """The image read-only on a loop device, detached afterwards whatever happens."""
    device = subprocess.run(["losetup", "--find", "--show", "--read-only", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True)


KERNEL_READS_ISO9660 = "iso9660" in Path("/proc/filesystems").read_text()


@contextlib.contextmanager
def disc_contents(device: Path, target: Path):
    """The disc's files at `target`: mounted read-only where the kernel can, else copied out with pycdlib."""
    target.mkdir(parents=True, exist_ok=True)
    if KERNEL_READS_ISO9660:
        subprocess.run(["mount", "-o", "ro", str(device), str(target)], check=True, capture_output=True)
        try:
            yield target
        finally:
            subprocess.run(["umount", str(target)], capture_output=True)
        return
    iso = pycdlib.PyCdlib()
    with open(device, "rb") as handle:
        iso.open_fp(handle)
        for directory, _, names in iso.walk(rr_path="/"):
            for name in names:
                path = f"{directory.rstrip('/')}/{name}"
                data = io.BytesIO()
                iso.get_file_from_iso_fp(data, rr_path=path)
                (target / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                (target / path.lstrip("/")).write_bytes(data.getvalue())
        iso.close()
    yield target


def current_serial(vm) -> str:
    return VMCertificate.objects.get(vm=vm, revoked=False).serial


@pytest.fixture
def disc(vm, actor, run_tasks, guest_tools_packages):
    """The VM's tools ISO on a loop device, as its guest would see the CD-ROM."""
    mount(actor, vm, run_tasks)
    with loop_device(tools_iso(vm)) as device:
        yield device


def test_the_agent_finds_the_disc_by_its_label_without_udev(disc):
    assert not config.ISO_DEVICE.exists(), "this machine has udev links: the blkid path is not what runs"
    assert config.find_iso_device() == disc


@pytest.mark.skipif(not KERNEL_READS_ISO9660, reason="this kernel has no iso9660 driver to mount the disc")
def test_the_agent_mounts_the_disc_read_only_and_installs_it(disc, vm, tmp_path):
    installed = config.discover(None, tmp_path / "etc")
    assert installed is not None and installed.vm_uuid == str(vm.uuid)
    assert installed.certificate_serial == current_serial(vm)
    assert (tmp_path / "etc/client.key").stat().st_mode & 0o777 == 0o600
    mounts = Path("/proc/mounts").read_text()
    assert str(disc) not in mounts, "the agent unmounts the disc it mounted for the scan"


def test_the_agent_installed_from_the_disc_links_its_identity(disc, vm, tmp_path):
    with disc_contents(disc, tmp_path / "media") as media:
        installer = media / "installer/linux/install.sh"
        result = subprocess.run(["sh", str(installer), "--root", str(tmp_path / "guest")], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        guest = tmp_path / "guest"
        assert all((guest / path).exists() for path in INSTALLED)
        # No service to talk to: the agent installs the disc's configuration, then retries the link.
        options = ["--config-dir", str(guest / "etc/facet-guest-tools"), "--state-dir", str(tmp_path / "run"),
                   "--serial", "", "--scan", "1", *([] if KERNEL_READS_ISO9660 else ["--media", str(media)])]
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(guest / "usr/lib/facet-guest-tools")}
        agent = subprocess.Popen(["/usr/bin/python3", "-m", "facet_guest_tools", "run", *options], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while not (guest / "etc/facet-guest-tools/ngt.json").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            agent.terminate()
            log = agent.communicate(timeout=10)[1]
    status = run_agent(guest, "status", *options[:4])
    assert f"VM uuid:            {vm.uuid}" in status.stdout, log
    assert f"certificate serial: {current_serial(vm)}" in status.stdout


def test_the_packages_on_the_disc_are_the_ones_built(disc, tmp_path):
    with disc_contents(disc, tmp_path / "media") as media:
        for built in guest_tools.guest_tools_packages().glob("*/**/*"):
            if built.is_file():
                relative = built.relative_to(guest_tools.guest_tools_packages())
                assert (media / "installer" / relative).read_bytes() == built.read_bytes(), relative
        assert b"install.sh" in (media / "installer/README").read_bytes()
