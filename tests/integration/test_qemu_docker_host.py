"""A Docker host VM on real QEMU, end to end: created through `docker_hosts.request_create` from the Debian
docker-host image (tests/guest_image.py), on user-mode networking, against a console served for real (the
guest reaches the test's live server at 10.0.2.2) and a real Celery worker for the hypervisor's tasks. Its
first boot runs the product's cloud-config (the plugin's .deb fetched from the console with the host's own
token), then a test-only script runs the issue's commands in the guest through its dockerd and our plugin.

The script reports on the serial console (lines `FACET-TEST NAME: VALUE`, read from virtlogd's log). While its
second container holds the volume, the test checks the console and the hypervisor, then says it is done by
creating a Docker volume the guest sees in `docker volume ls`: the product's own way from console to guest."""

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from defusedxml.ElementTree import fromstring

from console.core.models import Task
from console.models import VM, Network
from containers.models import DockerHost, VolumeGroup, VolumeGroupAttachment
from containers.services import docker_host_user_data, docker_hosts, shares, volume_groups
from tests.guest_image import DOCKER_HOST, ensure_guest_image
from tests.integration.conftest import cluster_image, domain_name, serial_console
from tests.realparts import wait_for

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = pytest.mark.slow
GiB, MiB = 1024**3, 1024**2
PLUGIN_BUILD = Path(__file__).resolve().parents[2] / "containers/plugin/packaging/build-deb.sh"
SLIRP_HOST = "10.0.2.2"  # the hypervisor host (its 127.0.0.1 included) as a guest on user-mode networking sees it
MOUNTPOINT = "/var/lib/facet/volumes/PGDataVol"
DONE_VOLUME = "facet-test-done"
BOOT_AND_INSTALL_SECONDS = 300
SCRIPT_SECONDS = 240

# Test-only: the commands, run by cloud-init after the product's runcmd installed and started the plugin.
GUEST_SCRIPT = f"""\
#!/bin/sh
exec > /dev/ttyS0 2>&1
say() {{ echo "FACET-TEST $1: $2"; }}
trap 'say exit $?' EXIT
set -e
mounted() {{ grep -c " {MOUNTPOINT} " /proc/mounts || true; }}
volume_disks() {{ ls /dev/disk/by-id | grep '^virtio-' | tr '\\n' ' ' || true; }}
# No registry is reachable: the image is busybox's rootfs, imported.
rootfs=$(mktemp -d)
mkdir "$rootfs/bin" && cp /bin/busybox "$rootfs/bin/"
for applet in $(/bin/busybox --list); do [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"; done
set -x
tar -C "$rootfs" -c . | docker import --change "ENV PATH=/bin" - facet-busybox
docker volume create PGDataVol --driver facet -o size=1G
docker run --rm --network none --volume-driver facet -v PGDataVol:/data facet-busybox \\
  sh -c "echo first > /data/log && sync"
say mounted_between "$(mounted)"
waited=0
while [ -n "$(volume_disks)" ] && [ $waited -lt 60 ]; do sleep 1; waited=$((waited + 1)); done
say disks_between "$(volume_disks)"
docker run -d --name reader --network none --volume-driver facet -v PGDataVol:/data facet-busybox sleep 600
say disks "$(volume_disks)"
say source "$(findmnt -n -o SOURCE {MOUNTPOINT}) $(readlink -f /dev/disk/by-id/virtio-*)"
say read "$(docker exec reader cat /data/log)"
waited=0
until docker volume ls -q | grep -qx {DONE_VOLUME} || [ $waited -ge 300 ]; do sleep 2; waited=$((waited + 2)); done
docker rm --force reader
say mounted_after "$(mounted)"
"""


def with_guest_script(render):
    """docker_host_user_data.render, plus the test's script after the product's own runcmd."""
    def render_with_script(**kwargs) -> str:
        config = yaml.safe_load(render(**kwargs))
        config["write_files"].append({"path": "/root/facet-test.sh", "permissions": "0700", "content": GUEST_SCRIPT})
        config["runcmd"].append(["sh", "/root/facet-test.sh"])
        return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
    return render_with_script


def reports(vm: VM) -> dict[str, str]:
    """What the guest script said so far."""
    return dict(re.findall(r"^FACET-TEST (\w+): (.*?)\r?$", serial_console(vm), re.MULTILINE))


def reported(vm: VM, name: str, seconds: float) -> str:
    """What the guest script says of `name` (maybe ""), once it has."""
    def said() -> list[str]:
        found = reports(vm)
        if "exit" in found and name not in found:
            raise AssertionError(f"the guest script ended (exit {found['exit']}) before saying {name}")
        return [found[name]] if name in found else []
    return wait_for(said, seconds, f"the guest to say {name}", interval=1)[0]


@pytest.fixture
def plugin_package(settings) -> Path:
    """The plugin's .deb where the console serves it to Docker hosts (DATA_DIR/packages)."""
    if not shutil.which("dpkg-deb"):
        pytest.fail("dpkg-deb is not installed")
    out = Path(settings.DATA_DIR) / "packages"
    subprocess.run(["sh", str(PLUGIN_BUILD), str(out)], check=True, capture_output=True)
    return out / "facet-volume-plugin.deb"


def live_disk_serials(vm: VM) -> set[str]:
    domain = libvirt.open(vm.host.driver_uri).lookupByUUIDString(str(vm.uuid))
    return {disk.findtext("serial") for disk in fromstring(domain.XMLDesc(0)).iterfind("devices/disk")} - {None}


def succeeded(kind: str, group: VolumeGroup) -> int:
    return Task.objects.filter(kind=kind, entity_uuid=group.uuid, status=Task.Status.SUCCEEDED).count()


def test_a_docker_host_vm_keeps_a_volume_between_containers_through_hot_plug(
        qemu_cluster, plugin_package, live_server, celery_processes, settings, actor, monkeypatch):
    began = time.monotonic()
    image = cluster_image(qemu_cluster, ensure_guest_image(DOCKER_HOST), "debian-docker")
    network = Network.objects.create(cluster=qemu_cluster, name="lan", cidr="10.0.2.0/24")  # no mapping: user mode
    settings.GUEST_CONSOLE_URL = live_server.url.replace("localhost", SLIRP_HOST).replace("127.0.0.1", SLIRP_HOST)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, SLIRP_HOST]  # as FACET_GUEST_CONSOLE_URL's host is by default
    monkeypatch.setattr(docker_host_user_data, "render", with_guest_script(docker_host_user_data.render))
    celery_processes.worker()

    task, host = docker_hosts.request_create(actor, name=domain_name("dh"), image=image, vcpus=2,
                                             memory_bytes=GiB, network=network)
    vm = VM.objects.select_related("host").get(uuid=task.entity_uuid)
    try:
        wait_for(lambda: Task.objects.get(pk=task.pk).status not in ("queued", "running"), 180, "the VM's creation")
        task.refresh_from_db()
        assert task.status == Task.Status.SUCCEEDED, task.error
        wait_for(lambda: DockerHost.objects.get(pk=host.pk).state == DockerHost.State.READY,
                 BOOT_AND_INSTALL_SECONDS, "the guest to install the plugin from the console and say hello")
        host.refresh_from_db()
        assert host.plugin_version and host.docker_version.startswith("Docker version")

        read = reported(vm, "read", SCRIPT_SECONDS)  # the second container holds the volume now
        group = VolumeGroup.objects.get(docker_volume="PGDataVol")
        disk = group.disks.get()
        assert (group.state, disk.size_bytes, group.fstype) == ("ready", GiB, "ext4")
        found = reports(vm)
        assert found["mounted_between"] == "0" and found["disks_between"] == ""  # unmounted, and unplugged
        assert found["disks"].split() == [f"virtio-{disk.serial}"]  # hot-plugged by libvirt, named by its serial
        source, by_id = found["source"].split()
        assert source == by_id and source.startswith("/dev/vd")
        assert read == "first"
        attachment = VolumeGroupAttachment.objects.get(group=group)
        assert (attachment.docker_host_id, attachment.state) == (host.pk, VolumeGroupAttachment.State.ATTACHED)
        assert disk.serial in live_disk_serials(vm)
        wait_for(lambda: VolumeGroup.objects.get(pk=group.pk).mounts, 30, "the plugin's usage report")
        assert VolumeGroup.objects.get(pk=group.pk).used_bytes > 0

        volume_groups.request_create(actor, DONE_VOLUME, MiB, docker_volume=DONE_VOLUME, fstype="ext4", wait=True)
        # Made in the console, not by this host: its key reaches the volume once an Admin shares it.
        shares.share(actor, VolumeGroup.objects.get(name=DONE_VOLUME), host)
        assert reported(vm, "exit", 120) == "0"
        assert reports(vm)["mounted_after"] == "0"
        wait_for(lambda: not VolumeGroupAttachment.objects.filter(group=group).exists(), 60, "the last detach")
        assert disk.serial not in live_disk_serials(vm)
        assert (succeeded("volume-group.attach", group), succeeded("volume-group.detach", group)) == (2, 2)
    except AssertionError:
        print(f"--- serial console of {vm.name}\n{serial_console(vm)[-12000:]}")
        raise
    print(f"Docker host end to end: {time.monotonic() - began:.0f} s")
