"""The source's own commands, with our driver name, through a real dockerd, our plugin as its own process,
the live console and a real Celery worker."""

import signal
import subprocess
from pathlib import Path

import pytest

from console.core.models import Task
from containers.models import VolumeGroup, VolumeGroupAttachment
from containers.services import volume_groups

from .realdocker import IMAGE, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
GiB = 1024**3


def attached(name: str) -> bool:
    return VolumeGroupAttachment.objects.filter(group__docker_volume=name,
                                                state=VolumeGroupAttachment.State.ATTACHED).exists()


def loops_over(path) -> str:
    return subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True).stdout


def test_volume_survives_containers_and_a_plugin_crash(plugin):
    docker = plugin.docker
    docker.run("volume", "create", "PGDataVol", "--driver", "facet", "-o", "size=1G")
    group = VolumeGroup.objects.get(docker_volume="PGDataVol")
    disk = group.disks.get()
    assert (group.state, disk.size_bytes, group.fstype) == ("ready", GiB, "ext4")
    # Sparse: at most the filesystem the plugin makes on it at once, for the Mount to come, is written.
    assert disk.path.stat().st_size == GiB and disk.path.stat().st_blocks * 512 < GiB / 10

    docker.run("run", "--rm", "--network", "none", "--volume-driver", "facet", "-v", "PGDataVol:/data", IMAGE,
               "sh", "-c", "echo first > /data/log && sync")
    # Unmounted between containers: no loop device left, nothing mounted, and soon detached in the console.
    assert loops_over(disk.path) == ""
    assert "/volumes/PGDataVol" not in plugin.namespace.mounts()
    wait_until(lambda: not VolumeGroupAttachment.objects.filter(group=group).exists(), what="the detach")

    holder = docker.run("run", "-d", "--network", "none", "--volume-driver", "facet", "-v", "PGDataVol:/data",
                        IMAGE, "sh", "-c", "echo second >> /data/log && sync && sleep 600").stdout.strip()
    wait_until(lambda: attached("PGDataVol"), what="the volume to be attached")
    wait_until(lambda: len(VolumeGroup.objects.get(pk=group.pk).mounts) == 1, what="the usage report")
    assert VolumeGroup.objects.get(pk=group.pk).used_bytes > 0

    plugin.kill(signal.SIGKILL)  # in the middle: a container still holds the volume
    plugin.start()
    assert "/volumes/PGDataVol" in plugin.namespace.mounts()  # reconcile kept the volume in use mounted
    assert attached("PGDataVol")

    docker.run("rm", "--force", holder)  # Unmount reaches the restarted plugin, which knows the caller
    wait_until(lambda: not VolumeGroupAttachment.objects.filter(group=group).exists(), what="the detach")
    assert loops_over(disk.path) == ""

    read = docker.run("run", "--rm", "--network", "none", "--volume-driver", "facet", "-v", "PGDataVol:/data",
                      IMAGE, "cat", "/data/log")
    assert read.stdout == "first\nsecond\n"

    assert "PGDataVol" in docker.run("volume", "ls", "--format", "{{.Name}}").stdout
    docker.run("volume", "rm", "PGDataVol")
    assert not VolumeGroup.objects.filter(docker_volume="PGDataVol").exists()
    assert not disk.path.exists()


def test_two_containers_share_a_mount_until_the_last_one_leaves(plugin):
    docker = plugin.docker
    docker.run("volume", "create", "shared", "--driver", "facet", "-o", "sizeMb=64")
    run = ["run", "-d", "--network", "none", "--volume-driver", "facet", "-v", "shared:/data", IMAGE]
    first = docker.run(*run, "sh", "-c", "echo one > /data/one && sleep 600").stdout.strip()
    second = docker.run(*run, "sh", "-c", "echo two > /data/two && sleep 600").stdout.strip()
    wait_until(lambda: len(VolumeGroup.objects.get(docker_volume="shared").mounts) == 2, what="two callers")
    docker.run("rm", "--force", first)
    assert attached("shared") and "/volumes/shared" in plugin.namespace.mounts()
    docker.run("rm", "--force", second)
    wait_until(lambda: not VolumeGroupAttachment.objects.filter(group__docker_volume="shared").exists(),
               what="the detach after the last caller")
    read = docker.run("run", "--rm", "--network", "none", "--volume-driver", "facet", "-v", "shared:/data", IMAGE,
                      "cat", "/data/one", "/data/two")
    assert read.stdout == "one\ntwo\n"


def may_resize_mounted_ext4() -> bool:
    """Growing a mounted ext4 needs CAP_SYS_RESOURCE, which some sandboxes take even from root."""
    status = Path("/proc/self/status").read_text()
    effective = int(next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1], 16)
    return bool(effective >> 24 & 1)


def df_kib(docker, container: str) -> int:
    """The size of /data as `df` shows it inside the container, in KiB."""
    line = docker.run("exec", container, "df", "-k", "/data").stdout.splitlines()[-1]
    return int(line.split()[1])


@pytest.mark.parametrize(("fstype", "size_mb", "grown_mb"), [("ext4", 64, 256), ("xfs", 320, 512)])
def test_a_grow_in_the_console_reaches_the_filesystem(plugin, actor, fstype, size_mb, grown_mb):
    docker = plugin.docker
    docker.run("volume", "create", "growvol", "--driver", "facet", "-o", f"sizeMb={size_mb}", "-o", f"fstype={fstype}")
    group = VolumeGroup.objects.get(docker_volume="growvol")
    holder = docker.run("run", "-d", "--network", "none", "--volume-driver", "facet", "-v", "growvol:/data", IMAGE,
                        "sh", "-c", "seq 1 100000 > /data/numbers && sync && sleep 600").stdout.strip()
    wait_until(lambda: attached("growvol"), what="the volume to be attached")
    before = df_kib(docker, holder)
    assert before <= size_mb * 1024

    task = volume_groups.request_grow(actor, group, grown_mb * 1024**2)  # on a mounted volume: online
    wait_until(lambda: Task.objects.get(pk=task.pk).status == "succeeded", what="the grow task")
    assert "grows the filesystem online" in Task.objects.get(pk=task.pk).message
    if fstype == "ext4" and not may_resize_mounted_ext4():
        print("NOTE: no CAP_SYS_RESOURCE here: a mounted ext4 cannot grow; checking it grows at the next mount")
    else:
        wait_until(lambda: df_kib(docker, holder) > size_mb * 1024, what="df to show the grown filesystem")
    assert docker.run("exec", holder, "sh", "-c", "tail -n 1 /data/numbers").stdout.strip() == "100000"

    docker.run("rm", "--force", holder)
    wait_until(lambda: not VolumeGroupAttachment.objects.filter(group=group).exists(), what="the detach")
    volume_groups.request_grow(actor, group, (grown_mb + 128) * 1024**2)  # detached: at the next mount
    read = docker.run("run", "--rm", "--network", "none", "--volume-driver", "facet", "-v", "growvol:/data", IMAGE,
                      "sh", "-c", "df -k /data | tail -n 1; wc -l < /data/numbers")
    size_line, lines = read.stdout.splitlines()
    assert int(size_line.split()[1]) > grown_mb * 1024 and lines.strip() == "100000"
