"""Small Debian guests for the real-QEMU tests: bookworm minbase with systemd, python3, cloud-init, udev and
Debian's cloud kernel, on a raw disk that boots by itself (syslinux on a FAT partition, the root on ext4), so
the libvirt driver boots it like any cloud image. Two variants: `base`, with no network, and `docker-host`, a
Docker host's image with its NIC on DHCP and what a Docker host's cloud-config installs already there.

Built without mounting anything (debootstrap into a directory, `mkfs.ext4 -d`, mtools for the FAT side) into
a cache outside the checkout, `FACET_GUEST_IMAGE_DIR` (default /var/cache/facet/guest-image), and rebuilt only
when missing or when this file (the recipe) changes. Downloaded packages stay in the cache's `debs/`, so a
changed recipe rebuilds without the network unless it adds packages.

    python tests/guest_image.py [base|docker-host]   # the disk image's path, building it first when needed
"""

import fcntl
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("FACET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# udev makes /dev/virtio-ports/NAME (the agent's serial port) and /dev/disk/by-id; dbus lets cloud-init set
# the hostname through hostnamectl.
PACKAGES = ["systemd-sysv", "udev", "dbus", "python3", "cloud-init", "util-linux", "kmod", "initramfs-tools",
            "linux-image-cloud-amd64"]
DISK_BYTES = 3 * 1024**3
BOOT_START, BOOT_BYTES = 1024**2, 128 * 1024**2  # the FAT partition with syslinux, the kernel and initrd
ROOT_START = BOOT_START + BOOT_BYTES
ROOT_LABEL = "facet-root"
KERNEL_ARGS = "root=/dev/vda2 rw console=ttyS0,115200"
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
NEEDED_TOOLS = ["debootstrap", "mkfs.ext4", "mkfs.vfat", "mcopy", "syslinux"]

# cloud-init reads only the console's media (ConfigDrive by default, NoCloud on request) and leaves the
# network alone: minbase has no network renderer (the docker-host variant's NIC is systemd-networkd's).
CLOUD_CFG = """\
datasource_list: [ConfigDrive, NoCloud, None]
network: {config: disabled}
"""
# The Docker host's NIC: DHCP from whatever serves the network (QEMU's user-mode networking does).
DHCP_NETWORK = """\
[Match]
Name=en*

[Network]
DHCP=ipv4
"""
SYSLINUX_CFG = f"""\
SERIAL 0 115200
DEFAULT facet
PROMPT 0
TIMEOUT 0
LABEL facet
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND {KERNEL_ARGS}
"""


@dataclass(frozen=True)
class Variant:
    name: str
    packages: tuple[str, ...] = ()
    dhcp: bool = False  # systemd-networkd on DHCP, waited for by network-online.target

    @property
    def file_name(self) -> str:
        return f"{self.name}.raw"


BASE = Variant("base")
# What containers/services/cloud_config.py installs, there already: under TCG its first boot would otherwise
# spend minutes in apt-get. No apt sources either, so its `package_update` is quick and needs no mirror.
# apparmor: the cloud kernel enables AppArmor, and dockerd then runs no container without apparmor_parser (a
# Debian cloud image has it; docker.io recommends it). busybox-static: the tests build their container image
# from it (no registry is reachable).
DOCKER_HOST = Variant("docker-host", packages=("docker.io", "curl", "e2fsprogs", "xfsprogs", "apparmor",
                                               "busybox-static"), dhcp=True)
VARIANTS = {variant.name: variant for variant in (BASE, DOCKER_HOST)}


def cache_dir() -> Path:
    return Path(os.environ.get("FACET_GUEST_IMAGE_DIR", "/var/cache/facet/guest-image"))


def recipe_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def image_path(variant: Variant = BASE) -> Path:
    return cache_dir() / recipe_digest() / variant.file_name


def ensure_guest_image(variant: Variant = BASE, log=sys.stderr) -> Path:
    """The variant's cached disk image, built first when missing or when the recipe changed (one builder at a
    time)."""
    target = image_path(variant)
    if target.is_file():
        return target
    if os.geteuid() != 0:
        raise RuntimeError(f"building the guest image {target} needs root (debootstrap)")
    missing = [tool for tool in NEEDED_TOOLS if not shutil.which(tool)]
    if missing or not SYSLINUX_MBR.is_file():
        raise RuntimeError(f"building the guest image needs {', '.join(missing or ['syslinux-common'])}: "
                           "make setup installs them")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)  # libvirt's QEMU user reads images from here
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():  # another process may have built it while we waited
            _build(variant, target, log)
    return target


def _run(command: list[str], log, **kwargs) -> None:
    print("+", " ".join(command), file=log, flush=True)
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, **kwargs)


def _build(variant: Variant, target: Path, log) -> None:
    cache = target.parent.parent
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        root = work / "root"
        _run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", SUITE, str(root), MIRROR], log)
        _install_packages(root, debs, PACKAGES + list(variant.packages), log)
        _configure(root, variant, log)
        disk = work / "disk.raw"
        _make_disk(root, work, disk, log)
        target.parent.mkdir(exist_ok=True)
        target.parent.chmod(0o755)
        disk.chmod(0o644)
        os.replace(disk, target)
        for old in cache.iterdir():  # images of earlier recipes (this recipe's other variants stay)
            if old.is_dir() and old not in (target.parent, debs, work):
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install_packages(root: Path, debs: Path, packages: list[str], log) -> None:
    """apt-get in the chroot (debootstrap's own resolver cannot configure cloud-init's Python stack), with
    /proc mounted in a private mount namespace that vanishes with the command, and no service started."""
    archives = root / "var/cache/apt/archives"
    for deb in debs.glob("*.deb"):
        shutil.copy2(deb, archives)
    no_services = root / "usr/sbin/policy-rc.d"
    no_services.write_text("#!/bin/sh\nexit 101\n")
    no_services.chmod(0o755)
    install = (f"mount -t proc proc {root}/proc && chroot {root} apt-get install -y -q --no-install-recommends "
               + " ".join(packages))
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", install], log,
         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
    no_services.unlink()
    for deb in archives.glob("*.deb"):
        if not (debs / deb.name).exists():
            shutil.copy2(deb, debs)
        deb.unlink()


def _configure(root: Path, variant: Variant, log) -> None:
    (root / "etc/fstab").write_text(f"LABEL={ROOT_LABEL} / ext4 rw,errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("facet-guest\n")  # cloud-init replaces it with the VM's hostname
    (root / "etc/cloud/cloud.cfg.d/90_facet.cfg").write_text(CLOUD_CFG)
    # ds-identify runs before udev has settled and could disable cloud-init for want of the CD-ROM yet.
    (root / "etc/cloud/ds-identify.cfg").write_text("policy: enabled\n")
    (root / "etc/machine-id").write_text("")  # a new one on each VM's first boot
    if variant.packages:
        (root / "etc/apt/sources.list").write_text("")
    if variant.dhcp:
        (root / "etc/systemd/network/80-dhcp.network").write_text(DHCP_NETWORK)
        _run(["chroot", str(root), "systemctl", "enable", "systemd-networkd", "systemd-networkd-wait-online"], log)


def _make_disk(root: Path, work: Path, disk: Path, log) -> None:
    kernel = max((root / "boot").glob("vmlinuz-*"))
    initrd = max((root / "boot").glob("initrd.img-*"))
    boot = work / "boot.fat"
    (work / "syslinux.cfg").write_text(SYSLINUX_CFG)
    # -h: the partition's first sector, which the FAT boot sector needs to find itself on the disk.
    _run(["mkfs.vfat", "-F", "16", "-n", "FACET-BOOT", "-h", str(BOOT_START // 512), "-C", str(boot),
          str(BOOT_BYTES // 1024)], log)
    _run(["mcopy", "-i", str(boot), str(kernel), "::/vmlinuz"], log)
    _run(["mcopy", "-i", str(boot), str(initrd), "::/initrd.img"], log)
    _run(["mcopy", "-i", str(boot), str(work / "syslinux.cfg"), "::/syslinux.cfg"], log)
    _run(["syslinux", "--install", str(boot)], log)
    with open(disk, "wb") as handle:
        handle.truncate(DISK_BYTES)
    _run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), "-E", f"offset={ROOT_START}", str(disk),
          f"{(DISK_BYTES - ROOT_START) // 1024}k"], log)
    with open(disk, "r+b") as handle, open(boot, "rb") as fat:
        handle.seek(BOOT_START)
        shutil.copyfileobj(fat, handle)
        handle.seek(0)
        handle.write(SYSLINUX_MBR.read_bytes()[:440])
        handle.seek(446)
        handle.write(_partition(0x80, 0x0E, BOOT_START, BOOT_BYTES))  # FAT16 (LBA), active
        handle.write(_partition(0x00, 0x83, ROOT_START, DISK_BYTES - ROOT_START))
        handle.write(bytes(32))
        handle.write(b"\x55\xaa")


def _partition(status: int, kind: int, start: int, size: int) -> bytes:
    """An MBR partition entry addressed by LBA; the CHS fields say "beyond CHS", as for any large disk."""
    chs_max = b"\xfe\xff\xff"
    return struct.pack("<B3sB3sII", status, chs_max, kind, chs_max, start // 512, size // 512)


if __name__ == "__main__":
    print(ensure_guest_image(VARIANTS[sys.argv[1] if len(sys.argv) > 1 else BASE.name]))
