"""`facet volume-group ...` and `facet docker-host ...` against a live console, with CONTAINER_NOUNS merged
into the command table the way the lead merges it."""

import re

import pytest

from console.cli.commands import NOUNS
from containers.cli import NOUNS as CONTAINER_NOUNS
from containers.models import DockerHost, VolumeGroup
from containers.services import volume_groups

MiB = 1024**2


@pytest.fixture
def facet(facet_as_admin):
    return facet_as_admin


def test_nouns_do_not_clash_with_the_console_ones():
    assert not set(NOUNS) & set(CONTAINER_NOUNS)
    assert set(CONTAINER_NOUNS["volume-group"].verbs) == {"list", "get", "create", "grow", "attach", "detach",
                                                           "delete", "share", "unshare"}
    assert set(CONTAINER_NOUNS["docker-host"].verbs) == {"list", "get", "create", "register", "remove"}


def test_volume_group_create_list_get(facet, run_tasks):
    code, out, err = facet("volume-group", "create", "name=pg", "size=10G", "disks=2")
    assert code == 0 and out.startswith("volume-group.create pg: task") and "facet task get" in err
    run_tasks()
    code, out, _ = facet("volume-group", "list")
    assert code == 0 and "pg" in out and "20G" in out and "ready" in out
    code, out, _ = facet("volume-group", "get", "name=pg")
    assert code == 0 and "Size:" in out and "SERIAL" in out


def test_attach_and_detach_by_name(facet, run_tasks, vm):
    facet("volume-group", "create", "name=pg", "size=64M")
    run_tasks()
    code, out, _ = facet("volume-group", "attach", "name=pg", f"vm={vm.uuid}")
    assert code == 0 and "volume-group.attach" in out
    run_tasks()
    code, out, _ = facet("volume-group", "list")
    assert "vm:web-1" in out
    code, out, err = facet("volume-group", "delete", "name=pg")
    assert code != 0 and "detach it first" in err
    assert facet("volume-group", "detach", "name=pg")[0] == 0


def test_bad_size_is_a_usage_error(facet):
    code, _, err = facet("volume-group", "create", "name=pg", "size=huge")
    assert code == 2 and "is not a size" in err
    assert not VolumeGroup.objects.exists()


def test_docker_host_register_prints_the_key_once(facet):
    code, out, err = facet("docker-host", "register", "name=edge-1")
    assert code == 0 and out.strip().startswith("facetdh_") and "shown only this once" in err
    code, out, _ = facet("docker-host", "list")
    assert "edge-1" in out and "pending" in out
    code, out, _ = facet("docker-host", "get", "name=edge-1")
    assert "external" in out
    code, out, _ = facet("docker-host", "remove", "name=edge-1")
    assert code == 0 and out == "removed\n" and not DockerHost.objects.exists()


def test_docker_host_create_answers_the_vm_task(facet, cluster):
    image = cluster.images.get(name="base-disk")
    code, out, _ = facet("docker-host", "create", "name=dh-vm", f"image={image.uuid}", "vcpus=1", "memory=1G")
    assert code == 0 and out.startswith("vm.create dh-vm: task")
    assert DockerHost.objects.get().vm.name == "dh-vm"


def test_grow(facet, run_tasks, actor):
    volume_groups.request_create(actor, "pg", 64 * MiB)
    run_tasks()
    assert facet("volume-group", "grow", "name=pg", "size=128M")[0] == 0
    run_tasks()
    assert VolumeGroup.objects.get().disks.get().size_bytes == 128 * MiB


def test_share_and_unshare_a_docker_volume_by_name(facet, actor, run_tasks, docker_host):
    volume_groups.request_create(actor, "pgdata", MiB, docker_volume="pgdata", fstype="ext4")
    run_tasks()
    code, out, _ = facet("volume-group", "share", "name=pgdata", f"docker-host={docker_host.uuid}")
    assert code == 0 and re.search(r"Shared with: +dh-1", out), out
    assert list(VolumeGroup.objects.get().shared_with.all()) == [docker_host]
    code, out, _ = facet("volume-group", "unshare", "name=pgdata", f"docker-host={docker_host.uuid}")
    assert code == 0 and not VolumeGroup.objects.get().shared_with.exists()
