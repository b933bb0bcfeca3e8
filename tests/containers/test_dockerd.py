"""The source's own commands, with our driver name, through a real dockerd, our plugin as its own process,
the live console and a real Celery worker."""

import signal
import subprocess

import pytest

from containers.models import VolumeGroup, VolumeGroupAttachment

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
    assert disk.path.stat().st_size == GiB and disk.path.stat().st_blocks == 0  # sparse until written

    docker.run("run", "--rm", "--network", "none", "--volume-driver", "facet", "-v", "PGDataVol:/data", IMAGE,
               "sh", "-c", "echo first > /data/log && sync")
    # Unmounted between containers: detached in the console, no loop device left, nothing mounted.
    assert not VolumeGroupAttachment.objects.filter(group=group).exists()
    assert loops_over(disk.path) == ""
    assert "/volumes/PGDataVol" not in plugin.namespace.mounts()

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
