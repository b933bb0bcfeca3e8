"""Bad input and faults as Docker users meet them: `docker volume create` and `docker run` fail with our clear
message, in time, and touch no data. The console is reached through a proxy the tests can break."""

import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from containers.models import VolumeGroup, VolumeGroupAttachment
from containers.services import docker_hosts, shares
from tests.realparts import ROOT

from .realdocker import IMAGE, ConsoleProxy, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CALL_SECONDS = 20  # the plugin's deadline per Docker request, as shipped


@pytest.fixture
def proxy(live_server):
    hop = ConsoleProxy(urlsplit(live_server.url).port)
    yield hop
    hop.close()


@pytest.fixture
def console_url(proxy) -> str:
    return proxy.url


def refused(docker, *args: str) -> str:
    done = docker.run(*args, check=False)
    assert done.returncode != 0, done.stdout
    return done.stderr


def run_with(docker, volume: str, *command: str):
    return docker.run("run", "--rm", "--network", "none", "--volume-driver", "facet", "-v", f"{volume}:/data", IMAGE,
                      *command, check=False)


@pytest.mark.parametrize(("options", "message"), [
    (["-o", "colour=blue"], "unknown option(s) colour; known: size, sizeMb, fstype, container"),
    (["-o", "size=lots"], "size 'lots' is not a size"),
    (["-o", "size=1G", "-o", "sizeMb=10"], "give size or sizeMb, not both"),
    (["-o", "fstype=btrfs"], "fstype 'btrfs' is not supported"),
    (["-o", "fstype=xfs", "-o", "size=100M"], "an xfs volume needs a size of at least 300M"),
    (["-o", "size=60T"], "more than storage container default has free"),
    (["-o", "container=elsewhere"], "no storage container is named 'elsewhere'"),
])
def test_bad_create_options_are_refused_clearly(plugin, options, message):
    assert message in refused(plugin.docker, "volume", "create", "badvol", "--driver", "facet", *options)
    assert not VolumeGroup.objects.exists()


def test_a_name_docker_accepts_but_we_cannot_keep_is_refused(plugin):
    long_name = "v" * 64
    assert "bad volume name" in refused(plugin.docker, "volume", "create", long_name, "--driver", "facet")
    assert not VolumeGroup.objects.exists()


def test_sizemb_as_the_platform_plugin_takes_it(plugin):
    plugin.docker.run("volume", "create", "mbvol", "--driver", "facet", "-o", "sizeMb=512", "-o", "fstype=xfs")
    group = VolumeGroup.objects.get(docker_volume="mbvol")
    assert (group.disks.get().size_bytes, group.fstype) == (512 * 1024**2, "xfs")
    done = run_with(plugin.docker, "mbvol", "sh", "-c", "grep -q ' /data xfs ' /proc/mounts && echo xfs-ok")
    assert done.stdout.strip() == "xfs-ok", done.stderr
    plugin.docker.run("volume", "rm", "mbvol")


def test_mount_of_a_group_attached_elsewhere_is_refused(plugin, cluster, actor, run_tasks, docker_host):
    other, key = docker_hosts.register(actor, "dh-2")
    storage_container = cluster.storage_containers.get()
    docker_hosts.hello(other, docker_version="", plugin_version="",
                       probes={str(storage_container.uuid): other.probe_file(storage_container).read_text()})
    # Created by dh-2's plugin, which holds it attached there for its first Mount.
    its_plugin = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    created = its_plugin.post("/api/v1/docker-host/volumes/?wait=1", {"name": "busyvol", "size_bytes": 64 * 1024**2,
                                                                      "attach": True}, format="json")
    assert created.json()["volume"]["attached_to"] == "Docker host dh-2"
    group = VolumeGroup.objects.get(docker_volume="busyvol")
    shares.share(actor, group, docker_host)  # dh-2 made it; dh-1 may use it only once an Admin shares it
    done = run_with(plugin.docker, "busyvol", "true")
    assert done.returncode != 0 and "attached to Docker host dh-2: one writer at a time" in done.stderr
    assert "/volumes/busyvol" not in plugin.namespace.mounts()
    assert VolumeGroupAttachment.objects.get(group=group).docker_host == other


def test_a_vanished_disk_file_fails_the_mount(plugin):
    plugin.docker.run("volume", "create", "lostvol", "--driver", "facet", "-o", "size=64M")
    disk = VolumeGroup.objects.get(docker_volume="lostvol").disks.get()
    disk.path.unlink()
    done = run_with(plugin.docker, "lostvol", "true")
    # Said by the plugin, or by the console when the plugin had let the volume go on finding the file gone.
    assert done.returncode != 0 and str(disk.path) in done.stderr
    assert "is missing" in done.stderr or "vanished" in done.stderr
    wait_until(lambda: not VolumeGroupAttachment.objects.exists(), 10, "the detach")  # held since its create
    assert "/volumes/lostvol" not in plugin.namespace.mounts()


def test_a_slow_console_gives_docker_an_error_within_the_deadline(plugin, proxy):
    proxy.mode = "slow"
    started = time.monotonic()
    message = refused(plugin.docker, "volume", "create", "slowvol", "--driver", "facet", "-o", "size=64M")
    took = time.monotonic() - started
    assert "cannot reach the Facet console" in message and "timed out" in message
    assert CALL_SECONDS - 1 < took < CALL_SECONDS + 5, took


def test_a_console_that_is_down_gives_docker_an_error_at_once(plugin, proxy):
    proxy.mode = "down"
    started = time.monotonic()
    message = refused(plugin.docker, "volume", "create", "downvol", "--driver", "facet")
    assert "cannot reach the Facet console" in message
    assert time.monotonic() - started < 5
    proxy.mode = "up"
    plugin.docker.run("volume", "create", "downvol", "--driver", "facet", "-o", "size=64M")  # and it recovers
    assert VolumeGroup.objects.filter(docker_volume="downvol").exists()


def wait_for_task(task, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task.refresh_from_db()
        if task.status in ("succeeded", "failed"):
            assert task.status == "succeeded", task.error
            return
        time.sleep(0.05)
    raise AssertionError(f"task {task.kind} did not end within {timeout} s")


def test_no_loop_device_is_left_behind(plugin, cluster):
    plugin.docker.run("volume", "create", "tidyvol", "--driver", "facet", "-o", "size=64M")
    assert run_with(plugin.docker, "tidyvol", "sh", "-c", "echo x > /data/x").returncode == 0
    disk = VolumeGroup.objects.get(docker_volume="tidyvol").disks.get()
    assert subprocess.run(["losetup", "-j", str(disk.path)], capture_output=True, text=True).stdout == ""


def start_refused(namespace, console: str, key: str, name: str, tmp_path) -> subprocess.CompletedProcess:
    """Start the plugin as the machine would, expecting it to stop at once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FACET_URL": console, "FACET_TOKEN": key,
           "FACET_DOCKER_HOST": name, "FACET_PLUGIN_SOCKET": str(tmp_path / "s")}
    return subprocess.run(namespace.command(sys.executable, "-m", "containers.plugin"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_machine_that_cannot_see_the_container_is_refused_saying_why(docker_world, live_server, cluster, actor,
                                                                        tmp_path):
    host, key = docker_hosts.register(actor, "blind")
    storage_container = cluster.storage_containers.get()
    host.probe_file(storage_container).unlink()  # as if the container's directory were not mounted on that machine
    started = start_refused(docker_world[0], live_server.url, key, "blind", tmp_path)
    assert started.returncode == 1
    assert f"cannot see any storage container's directory (default at {storage_container.path}: probe file not found)" \
        in started.stderr
    host.refresh_from_db()
    assert host.state == "refused" and "probe file not found" in host.problem


def test_a_key_used_under_another_host_name_is_refused(docker_world, live_server, docker_host, tmp_path):
    started = start_refused(docker_world[0], live_server.url, docker_host.key, "someone-else", tmp_path)
    assert started.returncode == 1 and "belongs to Docker host 'dh-1', not 'someone-else'" in started.stderr


def test_an_unmount_while_the_console_is_down_reaches_it_once_it_is_back(plugin, proxy):
    docker = plugin.docker
    docker.run("volume", "create", "awayvol", "--driver", "facet", "-o", "size=64M")
    group = VolumeGroup.objects.get(docker_volume="awayvol")
    holder = docker.run("run", "-d", "--network", "none", "--volume-driver", "facet", "-v", "awayvol:/data", IMAGE,
                        "sh", "-c", "echo kept > /data/x && sync && sleep 600").stdout.strip()
    wait_until(lambda: VolumeGroupAttachment.objects.filter(group=group, state="attached").exists(),
               what="the attach")
    proxy.mode = "down"
    docker.run("rm", "--force", holder)  # Docker hears success: the volume is unmounted here
    assert "/volumes/awayvol" not in plugin.namespace.mounts()
    assert subprocess.run(["losetup", "-j", str(group.disks.get().path)], capture_output=True, text=True).stdout == ""
    time.sleep(3)  # the plugin retries meanwhile, and cannot get through
    assert VolumeGroupAttachment.objects.filter(group=group).exists()
    proxy.mode = "up"
    # Retries back off to at most the report period (1 s in the tests, 10 s as shipped).
    wait_until(lambda: not VolumeGroupAttachment.objects.filter(group=group).exists(), timeout=10,
               what="the console to learn of the detach")
    assert run_with(docker, "awayvol", "cat", "/data/x").stdout == "kept\n"
