"""Volume groups and Docker hosts through their services, with tasks run in-process on the sim driver."""

import io

import pycdlib
import pytest
import yaml

from console.core.actors import Actor
from console.core.errors import Busy, Conflict, InvalidRequest
from console.core.models import AuditEvent, SimDomain, Task
from console.core.tasks.running import execute
from console.models import VM, Image, Network
from console.services import vms
from containers.models import DockerHost, VolumeGroup, VolumeGroupAttachment
from containers.services import attachments, docker_host_user_data, docker_hosts, volume_groups
from containers.services.targets import Target
from customization.models import VMCustomization

GiB = 1024**3
MiB = 1024**2


@pytest.fixture
def group(cluster, actor, run_tasks):
    volume_groups.request_create(actor, "data", 64 * MiB, disk_count=2)
    run_tasks()
    return VolumeGroup.objects.get(name="data")


@pytest.fixture
def second_vm(cluster, actor, run_tasks):
    vms.request_create_vm(actor, vms.VMSpec(name="web-2", vcpus=1, memory_bytes=GiB))
    run_tasks()
    return VM.objects.get(name="web-2")


def disks_seen_by(vm: VM) -> dict:
    return SimDomain.objects.get(uuid=vm.uuid).disks


def test_create_makes_sparse_disks_with_short_serials(group):
    disks = list(group.disks.all())
    assert group.state == "ready" and [d.index for d in disks] == [0, 1]
    for disk in disks:
        assert disk.path.stat().st_size == 64 * MiB and disk.path.stat().st_blocks == 0
        assert len(disk.serial) <= 20 and disk.path.is_relative_to(group.storage_container.path)
    assert AuditEvent.objects.filter(action="volume-group.create", entity_uuid=group.uuid).exists()


@pytest.mark.parametrize(("name", "size", "problem"), [
    ("bad name!", 64 * MiB, "name"),
    ("ok", 1000, "size_bytes"),
    ("ok", 60 * 1024**4, "size_bytes"),  # within the disk limit, above the filesystem's free space
])
def test_create_refuses_bad_input(cluster, actor, name, size, problem):
    with pytest.raises(InvalidRequest) as refused:
        volume_groups.request_create(actor, name, size)
    assert problem in refused.value.errors
    assert not VolumeGroup.objects.exists()


def test_free_space_message_names_the_container(cluster, actor):
    with pytest.raises(InvalidRequest, match="more than storage container default has free"):
        volume_groups.request_create(actor, "huge", 60 * 1024**4)


def test_names_are_unique(group, actor):
    with pytest.raises(Conflict, match="already exists"):
        volume_groups.request_create(actor, "data", MiB)


def test_grow_lengthens_one_disk_and_never_shrinks(group, actor, run_tasks):
    volume_groups.request_grow(actor, group, 128 * MiB, index=1)
    run_tasks()
    disk = group.disks.get(index=1)
    assert disk.size_bytes == 128 * MiB and disk.path.stat().st_size == 128 * MiB
    with pytest.raises(InvalidRequest, match="only grows"):
        volume_groups.request_grow(actor, group, 64 * MiB, index=1)
    with pytest.raises(InvalidRequest, match="no disk 7"):
        volume_groups.request_grow(actor, group, GiB, index=7)


def test_a_grow_says_who_sees_the_new_size_and_when(group, vm, docker_host, actor, run_tasks):
    attachments.request_attach(actor, group, Target(vm=vm))
    run_tasks()
    volume_groups.request_grow(actor, group, 128 * MiB)
    [grown] = run_tasks()
    assert grown.message.endswith(f"VM {vm.name} sees the new size when it is next attached or powered on")
    attachments.request_attach(actor, group, Target(docker_host=docker_host), force=True)
    run_tasks()
    volume_groups.request_grow(actor, group, 256 * MiB)
    [grown] = run_tasks()
    assert grown.message.endswith(f"the plugin on Docker host {docker_host.name} grows the filesystem online "
                                  "at its next usage report")


def test_attach_to_a_vm_gives_the_hypervisor_every_disk(group, vm, actor, run_tasks):
    attachments.request_attach(actor, group, Target(vm=vm))
    [task] = run_tasks()
    assert task.status == "succeeded", task.error
    assert disks_seen_by(vm) == {d.serial: str(d.path) for d in group.disks.all()}
    assert VolumeGroupAttachment.objects.get(group=group).state == "attached"
    again = attachments.request_attach(actor, group, Target(vm=vm))
    assert again.status == "succeeded" and "already attached" in again.message


def test_one_writer_at_a_time_and_force_moves(group, vm, second_vm, actor, run_tasks):
    attachments.request_attach(actor, group, Target(vm=vm))
    run_tasks()
    with pytest.raises(Conflict, match="attached to VM web-1: one writer at a time"):
        attachments.request_attach(actor, group, Target(vm=second_vm))
    attachments.request_attach(actor, group, Target(vm=second_vm), force=True)
    run_tasks()
    assert disks_seen_by(vm) == {} and len(disks_seen_by(second_vm)) == 2
    assert VolumeGroupAttachment.objects.get(group=group).vm == second_vm


def test_a_detach_waits_for_the_attach_under_way_unless_forced(group, vm, actor, run_tasks):
    attachments.request_attach(actor, group, Target(vm=vm))
    with pytest.raises(Busy, match="is being attached to VM web-1; try again once that attach has finished"):
        attachments.request_detach(actor, group)
    # Forced (the host's worker may never run the attach): the attach, run after all, is undone by the detach.
    attachments.request_detach(actor, group, force=True)
    assert [task.status for task in run_tasks()] == ["succeeded", "succeeded"]
    assert disks_seen_by(vm) == {} and not VolumeGroupAttachment.objects.exists()


def test_delete_is_refused_while_attached(group, vm, actor, run_tasks):
    attachments.request_attach(actor, group, Target(vm=vm))
    run_tasks()
    with pytest.raises(Conflict, match="detach it first"):
        volume_groups.request_delete(actor, group)
    attachments.request_detach(actor, group)
    run_tasks()
    volume_groups.request_delete(actor, group)
    run_tasks()
    assert not VolumeGroup.objects.exists()
    assert not (group.storage_container.resolve(f"volume-groups/{group.uuid}")).exists()


def test_deleting_the_vm_frees_its_groups(group, vm, actor, run_tasks):
    attachments.request_attach(actor, group, Target(vm=vm))
    run_tasks()
    vms.request_delete(actor, vm)
    [task] = run_tasks()
    assert task.status == "succeeded", task.error
    assert not VolumeGroupAttachment.objects.exists() and all(d.path.exists() for d in group.disks.all())


def test_a_vanished_disk_file_fails_the_attach_and_touches_nothing(group, vm, actor, run_tasks):
    lost = group.disks.get(index=1).path
    lost.unlink()
    attachments.request_attach(actor, group, Target(vm=vm))
    [task] = run_tasks()
    assert task.status == "failed" and "vanished" in task.error and str(lost) in task.error
    assert disks_seen_by(vm) == {}
    assert not VolumeGroupAttachment.objects.filter(group=group).exists()
    assert group.disks.get(index=0).path.exists()


def test_only_the_docker_host_or_an_admin_by_force_detaches_from_a_docker_host(group, docker_host, operator,
                                                                               actor, run_tasks):
    attachments.request_attach(actor, group, Target(docker_host=docker_host))
    run_tasks()
    by_operator = Actor(user=operator)
    with pytest.raises(Conflict, match="which mounts it"):
        attachments.request_detach(by_operator, group)
    with pytest.raises(Conflict, match="needs the Admin role"):
        attachments.request_detach(by_operator, group, force=True)
    other, _ = docker_hosts.register(actor, "dh-2")
    with pytest.raises(Conflict, match="not to Docker host dh-2"):
        attachments.request_detach(Actor(user=None), group, asked_by=other)
    attachments.request_detach(actor, group, force=True)
    [task] = run_tasks()
    assert task.status == "succeeded" and "forced" in task.message
    assert not VolumeGroupAttachment.objects.exists()


def test_moving_away_from_a_docker_host_needs_an_admin(group, docker_host, operator, vm, actor, run_tasks):
    attachments.request_attach(actor, group, Target(docker_host=docker_host))
    run_tasks()
    with pytest.raises(Conflict, match="needs the Admin role"):
        attachments.request_attach(Actor(user=operator), group, Target(vm=vm), force=True)


def test_register_is_ready_only_once_the_plugin_sees_the_container(cluster, actor):
    host, key = docker_hosts.register(actor, "far-away")
    storage_container = cluster.storage_containers.get()
    assert host.state == "pending" and key.startswith("facetdh_") and host.key_hash != key
    assert docker_hosts.authenticate(key) == host and docker_hosts.authenticate(key + "x") is None
    with pytest.raises(Conflict, match=f"cannot see any storage container's directory .*{storage_container.path}"):
        docker_hosts.hello(host, docker_version="27", plugin_version="0.1", probes={})
    host.refresh_from_db()
    assert host.state == "refused" and "probe file not found" in host.problem
    docker_hosts.hello(host, docker_version="27", plugin_version="0.1",
                       probes={str(storage_container.uuid): host.probe_file(storage_container).read_text()})
    host.refresh_from_db()
    assert host.state == "ready" and list(host.storage_containers_seen.all()) == [storage_container]


def test_a_host_that_does_not_see_the_container_cannot_take_its_groups(group, actor, cluster):
    host, _ = docker_hosts.register(actor, "blind")
    DockerHost.objects.filter(pk=host.pk).update(state="ready")
    host.refresh_from_db()
    with pytest.raises(Conflict, match="cannot see storage container default"):
        attachments.request_attach(actor, group, Target(docker_host=host))


def test_remove_refused_while_groups_are_attached(group, docker_host, actor, run_tasks, cluster):
    attachments.request_attach(actor, group, Target(docker_host=docker_host))
    run_tasks()
    with pytest.raises(Conflict, match="detach them first"):
        docker_hosts.remove(actor, docker_host)
    attachments.request_detach(actor, group, force=True)
    run_tasks()
    probe = docker_hosts.DockerHost.objects.get().probe_file(cluster.storage_containers.get())
    assert docker_hosts.remove(actor, docker_host) is None
    assert not DockerHost.objects.exists() and not probe.exists()


def test_cloud_config_installs_docker_and_the_plugin_with_the_host_key():
    text = docker_host_user_data.render(host_name="dh-9", console_url="https://facet.example", key="facetdh_secret",
                                        default_storage_container="default")
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    assert "docker.io" in config["packages"] and config["hostname"] == "dh-9"
    [env] = config["write_files"]
    assert env["permissions"] == "0600" and "FACET_TOKEN=facetdh_secret\n" in env["content"]
    assert "FACET_DOCKER_HOST=dh-9\n" in env["content"] and "FACET_URL=https://facet.example\n" in env["content"]
    assert text.count("facetdh_secret") == 1  # the key is written once, in the root-only file
    assert ["systemctl", "enable", "--now", "facet-volume-plugin"] in config["runcmd"]


def test_create_docker_host_vm_boots_with_the_cloud_config(cluster, actor, run_tasks):
    image = Image.objects.get(name="base-disk")
    task, host = docker_hosts.request_create(actor, name="dh-vm", image=image, vcpus=2, memory_bytes=2 * GiB)
    assert host.kind == "vm" and host.vm.name == "dh-vm" and task.kind == "vm.create"
    customization = host.vm.customization
    assert "FACET_DOCKER_HOST=dh-vm" in customization.content
    run_tasks()
    assert Task.objects.get(pk=task.pk).status == "succeeded"
    assert VM.objects.get(pk=host.vm.pk).power_state == "on"


def media_file(iso_path: str, name: str) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.open(iso_path)
    data = io.BytesIO()
    iso.get_file_from_iso_fp(data, joliet_path=f"/{name}")
    iso.close()
    return data.getvalue()


def test_a_docker_host_vms_key_is_written_into_its_media_only(cluster, actor, run_tasks):
    image = Image.objects.get(name="base-disk")
    task, host = docker_hosts.request_create(actor, name="dh-vm", image=image, vcpus=1, memory_bytes=GiB)
    stored = VMCustomization.objects.get(vm=host.vm)
    assert DockerHost.KEY_PREFIX not in stored.content and "FACET_TOKEN=@@facet-sealed:" in stored.content
    assert stored.sealed_values and DockerHost.KEY_PREFIX not in stored.sealed_values  # encrypted until the media
    run_tasks()
    stored.refresh_from_db()
    assert stored.sealed_values == "" and DockerHost.KEY_PREFIX not in stored.content
    user_data = media_file(stored.iso_path, "openstack/latest/user_data").decode()
    [env] = yaml.safe_load(user_data)["write_files"]
    key = dict(line.split("=", 1) for line in env["content"].splitlines())["FACET_TOKEN"]
    assert docker_hosts.authenticate(key) == host  # the one readable copy is in the VM's media
    assert not Task.objects.filter(params__icontains=key).exists()
    assert not AuditEvent.objects.filter(detail__icontains=key).exists()


def test_a_docker_host_vm_gets_the_clusters_first_network_and_needs_one(cluster, actor):
    image = Image.objects.get(name="base-disk")
    _, host = docker_hosts.request_create(actor, name="dh-net", image=image, vcpus=1, memory_bytes=GiB)
    assert [nic.network.name for nic in host.vm.nics.all()] == ["lan"]  # its plugin must reach the console
    host.vm.nics.all().delete()
    Network.objects.all().delete()
    with pytest.raises(InvalidRequest) as refused:
        docker_hosts.request_create(actor, name="dh-none", image=image, vcpus=1, memory_bytes=GiB)
    assert "network" in refused.value.errors
    assert not DockerHost.objects.filter(name="dh-none").exists() and not VM.objects.filter(name="dh-none").exists()


def test_a_docker_host_vm_gets_groups_through_the_hypervisor(group, cluster, actor, run_tasks):
    image = Image.objects.get(name="base-disk")
    _, host = docker_hosts.request_create(actor, name="dh-vm", image=image, vcpus=1, memory_bytes=GiB)
    run_tasks()
    DockerHost.objects.filter(pk=host.pk).update(state="ready")
    host.refresh_from_db()
    attachments.request_attach(actor, group, Target(docker_host=host))
    run_tasks()
    assert set(disks_seen_by(host.vm)) == {d.serial for d in group.disks.all()}



@pytest.fixture
def docker_host_vm(cluster, actor, run_tasks) -> DockerHost:
    image = Image.objects.get(name="base-disk")
    _, host = docker_hosts.request_create(actor, name="dh-vm", image=image, vcpus=1, memory_bytes=GiB)
    run_tasks()
    DockerHost.objects.filter(pk=host.pk).update(state="ready")
    host.refresh_from_db()
    return host


def run(task: Task) -> Task:
    """One task, out of queue order, as a busy worker might run it."""
    execute(str(task.uuid), task.attempts)
    task.refresh_from_db()
    return task


def test_an_attach_is_refused_while_a_detach_is_under_way(group, docker_host_vm, actor, run_tasks):
    # The plugin's detach outlived its deadline: the task waits for the host's worker; a Mount comes in.
    attachments.request_attach(actor, group, Target(docker_host=docker_host_vm), asked_by=docker_host_vm)
    run_tasks()
    asked = Actor(user=None)
    detach = attachments.request_detach(asked, group, asked_by=docker_host_vm, wait=True)
    assert detach.status == "queued"
    with pytest.raises(Conflict, match="is being detached from Docker host dh-vm; try again once"):
        attachments.request_attach(asked, group, Target(docker_host=docker_host_vm), asked_by=docker_host_vm)
    with pytest.raises(Conflict, match="being detached"):
        attachments.request_attach(actor, group, Target(vm=docker_host_vm.vm), force=True)
    # The plugin asking again follows the detach under way rather than queueing another.
    again = attachments.request_detach(asked, group, asked_by=docker_host_vm, wait=True)
    assert again.uuid == detach.uuid
    assert Task.objects.filter(kind__startswith="volume-group.", status="queued").count() == 1
    run_tasks()
    assert disks_seen_by(docker_host_vm.vm) == {} and not VolumeGroupAttachment.objects.exists()
    attachments.request_attach(asked, group, Target(docker_host=docker_host_vm), asked_by=docker_host_vm)
    run_tasks()
    assert VolumeGroupAttachment.objects.get().state == "attached" and disks_seen_by(docker_host_vm.vm)


def test_a_detach_removes_only_the_attachment_it_was_asked_for(group, vm, actor, run_tasks):
    attachments.request_attach(actor, group, Target(vm=vm))
    run_tasks()
    detach = attachments.request_detach(actor, group)
    VolumeGroupAttachment.objects.update(state="attached")  # taken back before the worker got to the task
    assert "nothing done" in run(detach).message
    assert VolumeGroupAttachment.objects.get().state == "attached"
    assert set(disks_seen_by(vm)) == {d.serial for d in group.disks.all()}


def test_an_attach_whose_attachment_was_withdrawn_attaches_nothing(group, vm, actor, run_tasks):
    attach = attachments.request_attach(actor, group, Target(vm=vm))
    VolumeGroupAttachment.objects.all().delete()  # detached before the worker got to the task
    failed = run(attach)
    assert failed.status == "failed" and "was withdrawn" in failed.error
    assert disks_seen_by(vm) == {} and not VolumeGroupAttachment.objects.exists()
