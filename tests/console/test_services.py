"""The VM operations as plain functions, run in-process the way a worker runs them."""

import io
import os
from datetime import timedelta

import pytest
from django.utils import timezone

from console.celery import app
from console.core.errors import Conflict, InvalidRequest, TooLarge
from console.core.models import AuditEvent, SimDomain, Task
from console.core.tasks.reaper import fail_here, reap_stale
from console.core.tasks.running import execute
from console.models import VM, CdRom, Host, Image, Network, Nic
from console.services import bulk, cdroms, hosts, images, power, vms

GiB = 1024**3


def spec(**overrides) -> vms.VMSpec:
    values = {"name": "web-1", "vcpus": 2, "memory_bytes": 2 * GiB}
    values.update(overrides)
    return vms.VMSpec(**values)


def create(actor, run_tasks, **overrides) -> VM:
    task = vms.request_create_vm(actor, spec(**overrides))
    run_tasks()
    task.refresh_from_db()
    assert task.status == Task.Status.SUCCEEDED, task.error
    return VM.objects.get(uuid=task.entity_uuid)


def container_files(cluster) -> set[str]:
    root = cluster.storage_containers.get().path
    return {os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names}


def test_create_from_disk_image_copies_the_image_and_defines_the_vm(cluster, actor, run_tasks):
    image = Image.objects.get(name="base-disk")
    lan = Network.objects.get(name="lan")
    vm = create(actor, run_tasks, image=image, nics=[vms.NicSpec(network=lan, ip="auto")], power_on=True)

    assert vm.power_state == "on"
    disk = vm.disks.get()
    assert disk.path.read_bytes()[:10] == b"bootsector"
    assert disk.path.stat().st_size == image.size_bytes
    nic = vm.nics.get()
    assert nic.mac.startswith("52:54:00:") and nic.ip == "10.0.0.100"
    assert SimDomain.objects.get(uuid=vm.uuid).power_state == "on"
    assert AuditEvent.objects.filter(action="vm.create", entity_uuid=vm.uuid, username="alice").exists()
    task = Task.objects.get(entity_uuid=vm.uuid)
    assert (task.percent, task.message) == (100, "web-1 created and powered on")


def qcow2_image(cluster, virtual_size: int) -> Image:
    """A qcow2 image file as an upload leaves it: a few hundred bytes for a disk of `virtual_size`."""
    storage_container = cluster.storage_containers.get()
    path = storage_container.resolve("images/cloud.raw")  # uploads are named .raw whatever their format
    header = b"QFI\xfb" + (3).to_bytes(4, "big") + bytes(8) + bytes(4) + (16).to_bytes(4, "big")
    path.write_bytes(header + virtual_size.to_bytes(8, "big") + bytes(480))
    return Image.objects.create(cluster=cluster, name="cloud", kind="disk", storage_container=storage_container,
                                file_name="images/cloud.raw", size_bytes=path.stat().st_size,
                                disk_format="qcow2")


def test_a_vm_from_a_qcow2_image_records_the_image_s_virtual_size(cluster, actor, run_tasks):
    image = qcow2_image(cluster, 2 * GiB)
    disk = create(actor, run_tasks, image=image).disks.get()
    assert disk.size_bytes == 2 * GiB
    assert disk.path.stat().st_size == 2 * GiB  # the sim copies the file and grows it to the recorded size


@pytest.mark.parametrize(("qcow2", "asked", "minimum"), [(True, GiB, "2 GiB"), (False, 4 * 2**20, "8 MiB")])
def test_a_first_disk_smaller_than_its_image_is_refused(cluster, actor, qcow2, asked, minimum):
    image = qcow2_image(cluster, 2 * GiB) if qcow2 else Image.objects.get(name="base-disk")
    with pytest.raises(InvalidRequest) as error:
        vms.request_create_vm(actor, spec(image=image, disk_sizes=[asked]))
    assert error.value.errors["disks[0].size_bytes"] == [
        f"image {image.name} holds a disk of {minimum}: the first disk needs at least that"]
    assert not VM.objects.exists()


def test_an_image_whose_file_is_gone_is_refused_before_anything_is_made(cluster, actor):
    image = Image.objects.get(name="base-disk")
    image.path.unlink()
    with pytest.raises(Conflict, match="the file of image base-disk .* is missing"):
        vms.request_create_vm(actor, spec(image=image))
    assert not VM.objects.exists()


def test_create_with_an_iso_puts_it_in_the_first_cdrom(cluster, actor, run_tasks):
    iso = Image.objects.get(name="rescue-iso")
    vm = create(actor, run_tasks, image=iso, disk_sizes=[GiB])
    assert vm.cdroms.get(slot=0).image == iso
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {"0": str(iso.path)}
    assert vm.disks.get().path.stat().st_size == GiB


@pytest.mark.parametrize(("overrides", "field"), [
    ({"vcpus": 0}, "vcpus"),
    ({"vcpus": 9}, "vcpus"),  # more than any host has
    ({"memory_bytes": 17 * GiB}, "memory_bytes"),
    ({"disk_sizes": [10]}, "disks[0].size_bytes"),
    ({"name": "bad name!"}, "name"),
    ({"hostname": "-bad-"}, "hostname"),
])
def test_bad_create_requests_name_the_field_and_leave_nothing(cluster, actor, overrides, field):
    before = container_files(cluster)
    with pytest.raises(InvalidRequest) as error:
        vms.request_create_vm(actor, spec(**overrides))
    assert field in error.value.errors
    assert not VM.objects.exists() and not Task.objects.exists()
    assert container_files(cluster) == before


def test_memory_beyond_the_chosen_host_is_refused(cluster, actor):
    host = Host.objects.get(name="host-1")
    with pytest.raises(InvalidRequest) as error:
        vms.request_create_vm(actor, spec(host=host, memory_bytes=20 * GiB))
    assert "more than host host-1 has" in error.value.errors["memory_bytes"][0]


def test_duplicate_name_is_a_conflict(cluster, actor, run_tasks):
    create(actor, run_tasks)
    with pytest.raises(Conflict) as error:
        vms.request_create_vm(actor, spec())
    assert "already exists" in error.value.errors["name"][0]
    assert VM.objects.count() == 1


def test_static_ips_are_never_given_twice_and_the_pool_runs_out(cluster, actor, run_tasks):
    lan = Network.objects.get(name="lan")
    create(actor, run_tasks, name="a", nics=[vms.NicSpec(lan, ip="10.0.0.100")])
    with pytest.raises(Conflict) as error:
        vms.request_create_vm(actor, spec(name="b", nics=[vms.NicSpec(lan, ip="10.0.0.100")]))
    assert "already assigned" in error.value.errors["nics[0].ip"][0]
    vm = create(actor, run_tasks, name="b", nics=[vms.NicSpec(lan, ip="auto"), vms.NicSpec(lan, ip="auto")])
    assert sorted(vm.nics.values_list("ip", flat=True)) == ["10.0.0.101", "10.0.0.102"]
    with pytest.raises(Conflict) as error:
        vms.request_create_vm(actor, spec(name="c", nics=[vms.NicSpec(lan, ip="auto")]))
    assert "exhausted" in error.value.errors["nics[0].ip"][0]
    with pytest.raises(InvalidRequest):
        vms.request_create_vm(actor, spec(name="c", nics=[vms.NicSpec(lan, ip="192.168.1.5")]))


def test_a_given_mac_must_be_free_and_unicast(cluster, actor, run_tasks):
    lan = Network.objects.get(name="lan")
    create(actor, run_tasks, name="a", nics=[vms.NicSpec(lan, mac="52-54-00-AA-BB-CC")])
    assert Nic.objects.get().mac == "52:54:00:aa:bb:cc"
    with pytest.raises(Conflict):
        vms.request_create_vm(actor, spec(name="b", nics=[vms.NicSpec(lan, mac="52:54:00:aa:bb:cc")]))
    with pytest.raises(InvalidRequest):
        vms.request_create_vm(actor, spec(name="b", nics=[vms.NicSpec(lan, mac="01:00:5e:00:00:01")]))


def test_full_clone_gets_new_identity_and_its_own_disk_copy(cluster, actor, run_tasks):
    lan = Network.objects.get(name="lan")
    source = create(actor, run_tasks, image=Image.objects.get(name="base-disk"), nics=[vms.NicSpec(lan, ip="auto")])
    vms.request_clone(actor, source, "web-2")
    run_tasks()
    clone = VM.objects.get(name="web-2")
    assert clone.uuid != source.uuid and clone.parent == source
    assert clone.nics.get().mac != source.nics.get().mac
    assert clone.nics.get().ip == "10.0.0.101"
    disk = clone.disks.get()
    assert disk.path != source.disks.get().path and disk.path.read_bytes()[:10] == b"bootsector"
    assert disk.backing_file == ""


def test_linked_clone_keeps_its_base_until_the_clone_is_gone(cluster, actor, run_tasks):
    source = create(actor, run_tasks, image=Image.objects.get(name="base-disk"))
    vms.request_clone(actor, source, "linked-1", linked=True)
    run_tasks()
    clone = VM.objects.get(name="linked-1")
    assert clone.disks.get().backing_file == source.disks.get().file_name
    assert clone.disks.get().path.stat().st_blocks == 0  # an empty overlay
    with pytest.raises(Conflict) as error:
        vms.request_delete(actor, source)
    assert "linked clones (linked-1)" in error.value.errors["vm"][0]


def test_power_actions_follow_the_states(cluster, actor, run_tasks):
    vm = create(actor, run_tasks)
    power.request_power(actor, vm, "power-on")
    run_tasks()
    vm.refresh_from_db()
    assert vm.power_state == "on"
    with pytest.raises(power.AlreadyDone):
        power.request_power(actor, vm, "power-on")
    power.request_power(actor, vm, "reboot")
    power.request_power(actor, vm, "shutdown")
    run_tasks()
    vm.refresh_from_db()
    assert vm.power_state == "off"
    with pytest.raises(Conflict):
        power.request_power(actor, vm, "reset")
    with pytest.raises(InvalidRequest):
        power.request_power(actor, vm, "explode")


def test_templates_are_never_powered_on(cluster, actor, run_tasks):
    template = create(actor, run_tasks, is_template=True)
    with pytest.raises(Conflict) as error:
        power.request_power(actor, template, "power-on")
    assert "template" in error.value.errors["action"][0]


def test_delete_removes_the_domain_the_files_and_the_rows(cluster, actor, run_tasks):
    vm = create(actor, run_tasks, image=Image.objects.get(name="base-disk"), power_on=True)
    disk_path = vm.disks.get().path
    vms.request_delete(actor, vm)
    assert VM.objects.get(pk=vm.pk).power_state == "deleting"
    run_tasks()
    assert not VM.objects.filter(pk=vm.pk).exists()
    assert not disk_path.exists() and not disk_path.parent.exists()
    assert not SimDomain.objects.filter(uuid=vm.uuid).exists()


def test_insert_and_eject_an_iso(cluster, actor, run_tasks):
    vm = create(actor, run_tasks)
    iso = Image.objects.get(name="rescue-iso")
    cdroms.request_insert(actor, vm, iso)
    run_tasks()
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {"0": str(iso.path)}
    # The only slot is full and the VM is off: a second CD-ROM is added.
    cdroms.request_insert(actor, vm, iso)
    run_tasks()
    assert vm.cdroms.count() == 2
    cdroms.request_eject(actor, vm, 0)
    run_tasks()
    assert vm.cdroms.get(slot=0).iso_path == ""
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {"1": str(iso.path)}
    with pytest.raises(Conflict):
        cdroms.request_eject(actor, vm, 0)
    with pytest.raises(InvalidRequest):
        cdroms.request_insert(actor, vm, Image.objects.get(name="base-disk"))


def test_a_running_vm_without_a_free_cdrom_gets_a_hot_plugged_one_where_the_bus_allows(cluster, actor, run_tasks):
    iso = Image.objects.get(name="rescue-iso")
    vm = create(actor, run_tasks, image=iso, disk_sizes=[2**20], power_on=True)
    for expected in range(4, 12):  # the SCSI bus's slots; IDE (0 to 3) takes no drive while the VM runs
        cdroms.request_insert(actor, vm, iso)
        run_tasks()
        assert vm.cdroms.get(slot=expected).iso_path == str(iso.path)
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {str(slot): str(iso.path) for slot in [0, *range(4, 12)]}
    with pytest.raises(Conflict) as error:
        cdroms.request_insert(actor, vm, iso)
    assert error.value.errors["slot"][0].startswith("VM web-1 is on and has no empty CD-ROM (CD-ROM 0 holds "
                                                    "tools.iso, which you can eject; CD-ROM 4 holds")
    assert error.value.errors["slot"][0].endswith("power the VM off (a drive is then added), or free a CD-ROM")
    assert vm.cdroms.count() == 9


def test_a_vm_that_is_off_gets_drives_on_both_buses_and_no_more_than_twelve(cluster, actor, run_tasks):
    iso = Image.objects.get(name="rescue-iso")
    vm = create(actor, run_tasks, image=iso, disk_sizes=[2**20])
    for _ in range(11):
        cdroms.request_insert(actor, vm, iso)
    run_tasks()
    assert list(vm.cdroms.values_list("slot", flat=True)) == list(range(12))
    with pytest.raises(Conflict, match="VM web-1 has all its 12 CD-ROMs in use"):
        cdroms.request_insert(actor, vm, iso)


def test_bulk_power_on_counts_done_and_refused_vms(cluster, actor, run_tasks):
    a, b = create(actor, run_tasks, name="a"), create(actor, run_tasks, name="b", power_on=True)
    template = create(actor, run_tasks, name="tpl", is_template=True)
    parent = bulk.request_bulk(actor, "power-on", VM.objects.filter(pk__in=[a.pk, b.pk, template.pk]))
    assert parent.children.count() == 3
    run_tasks()
    parent.refresh_from_db()
    assert parent.status == "failed" and parent.percent == 100
    assert parent.error == "1 of 3 failed"
    by_name = {child.entity_name: child for child in parent.children.all()}
    assert by_name["a"].status == "succeeded" and by_name["b"].message == "VM b is already on"
    assert "template" in by_name["tpl"].error
    assert VM.objects.get(pk=a.pk).power_state == "on"


def test_bulk_refuses_unknown_actions_and_empty_selections(cluster, actor):
    with pytest.raises(InvalidRequest):
        bulk.request_bulk(actor, "explode", VM.objects.all())
    with pytest.raises(InvalidRequest):
        bulk.request_bulk(actor, "power-on", VM.objects.none())


def test_a_rerun_of_a_create_finishes_without_duplicating(cluster, actor, run_tasks):
    task = vms.request_create_vm(actor, spec(image=Image.objects.get(name="base-disk")))
    run_tasks()
    vm = VM.objects.get()
    # As if the worker died after the work but before it recorded the end: run it again.
    Task.objects.filter(pk=task.pk).update(status="queued", attempts=2)
    run_tasks()
    task.refresh_from_db()
    assert task.status == "succeeded"
    assert VM.objects.count() == 1 and vm.disks.count() == 1 and SimDomain.objects.count() == 1


def test_a_stale_delivery_is_dropped(cluster, actor):
    task = vms.request_create_vm(actor, spec())
    Task.objects.filter(pk=task.pk).update(attempts=2)  # requeued since this message was sent
    execute(str(task.uuid), 1)
    task.refresh_from_db()
    assert task.status == "queued"


def test_reaper_requeues_then_fails_and_undoes_a_silent_task(cluster, actor, settings, monkeypatch,
                                                             django_capture_on_commit_callbacks):
    settings.FACET_TASK_MAX_ATTEMPTS = 2
    # The undo runs on the task's host queue; the worker there is this process.
    monkeypatch.setattr(app, "send_task", lambda name, args, queue, **kw: fail_here(*args))
    task = vms.request_create_vm(actor, spec())
    old = timezone.now() - timedelta(seconds=settings.FACET_TASK_STALE_SECONDS + 1)
    Task.objects.filter(pk=task.pk).update(status="running", heartbeat_at=old)
    assert reap_stale() == {"requeued": 1, "failed": 0}
    task.refresh_from_db()
    assert (task.status, task.attempts) == ("queued", 2) and "worker lost" in task.message
    Task.objects.filter(pk=task.pk).update(status="running", heartbeat_at=old)
    with django_capture_on_commit_callbacks(execute=True):
        assert reap_stale() == {"requeued": 0, "failed": 1}
    task.refresh_from_db()
    assert task.status == "failed" and "worker lost" in task.error
    assert not VM.objects.exists()  # no half-made VM stays behind


def test_reconcile_reads_power_state_back(cluster, actor, run_tasks):
    vm = create(actor, run_tasks, power_on=True)
    SimDomain.objects.filter(uuid=vm.uuid).update(power_state="off")  # the guest shut itself down
    assert hosts.reconcile_power_states() == 1
    vm.refresh_from_db()
    assert vm.power_state == "off"


def test_upload_streams_hashes_and_registers_the_image(cluster, actor):
    data = b"x" * (3 * 1024 * 1024 + 5)
    task = images.receive_upload(actor, io.BytesIO(data), name="my-disk", kind="disk", content_length=len(data))
    image = Image.objects.get(name="my-disk")
    assert image.path.read_bytes() == data and image.size_bytes == len(data)
    import hashlib

    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert task.status == "succeeded" and image.sha256 in task.message


@pytest.mark.parametrize(("data", "length", "kind", "error", "field"), [
    (b"x" * 100, 200, "disk", InvalidRequest, "cut off after 100 of 200 bytes"),
    (b"x" * 100, 100, "iso", InvalidRequest, "not an ISO 9660 image"),
    (b"x" * 100, 10**15, "disk", TooLarge, "over the upload limit"),
    (b"x" * 100, None, "disk", InvalidRequest, "Content-Length"),
])
def test_bad_uploads_leave_no_file_and_no_image(cluster, actor, data, length, kind, error, field):
    before = container_files(cluster)
    with pytest.raises(error) as raised:
        images.receive_upload(actor, io.BytesIO(data), name="bad", kind=kind, content_length=length)
    assert field in str(raised.value)
    assert container_files(cluster) == before
    assert not Image.objects.filter(name="bad").exists()


def test_an_image_in_use_cannot_be_deleted(cluster, actor, run_tasks):
    iso = Image.objects.get(name="rescue-iso")
    create(actor, run_tasks, image=iso, disk_sizes=[2**20])
    with pytest.raises(Conflict):
        images.delete_image(actor, iso)
    CdRom.objects.update(image=None, iso_path="")
    images.delete_image(actor, iso)
    assert not iso.path.exists()


def test_a_running_task_is_not_started_twice(cluster, actor):
    task = vms.request_create_vm(actor, spec())
    Task.objects.filter(pk=task.pk).update(status="running")  # a broker redelivery while it runs
    execute(str(task.uuid), task.attempts)
    task.refresh_from_db()
    assert task.status == "running" and task.finished_at is None


def test_a_task_the_broker_never_got_is_sent_again(cluster, actor, monkeypatch, django_capture_on_commit_callbacks):

    def broker_down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(app, "send_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        task = vms.request_create_vm(actor, spec())  # the request still succeeds
    task.refresh_from_db()
    assert task.status == "queued" and task.celery_id == ""

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue, task_id: sent.append((args, queue, task_id)))
    assert reap_stale()["requeued"] == 0  # within the grace period
    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert reap_stale()["requeued"] == 1
    assert sent[0][:2] == ([str(task.uuid), 1], task.queue)
    task.refresh_from_db()
    assert task.celery_id == sent[0][2]


def test_a_bulk_sends_its_children_together_once_committed(cluster, actor, run_tasks, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    from console.services.bulk import request_bulk

    for number in range(3):
        create(actor, run_tasks, name=f"bulk-{number}")
    messages = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue, task_id: messages.append((name, args, queue)))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        parent = request_bulk(actor, "power-on", VM.objects.filter(name__startswith="bulk-"))
        assert messages == []  # nothing reaches the broker before the commit
    assert len(callbacks) == 1
    children = Task.objects.filter(parent=parent)
    sent = [task_uuid for name, args, _ in messages
            for task_uuid in ([args[0]] if name == "facet.task.run" else [item[0] for item in args[0]])]
    assert sorted(sent) == sorted(str(child.uuid) for child in children) and len(sent) == 3
    assert all(child.celery_id for child in children)
    # one message per host's queue: the children of one host go together, as a batch
    assert sorted(queue for _, _, queue in messages) == sorted({child.queue for child in children})


def test_a_batch_runs_its_tasks_and_rolls_their_parent_up_once(cluster, actor, run_tasks, monkeypatch):
    from console.core.tasks.running import execute_batch
    from console.services.bulk import request_bulk

    for number in range(3):
        create(actor, run_tasks, name=f"batch-{number}")
    parent = request_bulk(actor, "power-on", VM.objects.filter(name__startswith="batch-"))
    children = list(parent.children.order_by("id"))
    execute_batch([(str(child.uuid), child.attempts) for child in children] + [(str(children[0].uuid), 9)])
    parent.refresh_from_db()
    assert parent.status == "succeeded" and parent.message == "3 of 3 done"
    assert VM.objects.filter(name__startswith="batch-", power_state="on").count() == 3


def test_the_reaper_resends_a_lost_batch_s_tasks_that_never_started(cluster, actor, run_tasks, settings):
    from datetime import timedelta

    from django.utils import timezone

    from console.core.tasks.reaper import reap_stale

    task = vms.request_create_vm(actor, vms.VMSpec(name="waiting", vcpus=1, memory_bytes=GiB))
    long_ago = timezone.now() - timedelta(seconds=settings.FACET_TASK_STALE_SECONDS + 5)
    Task.objects.filter(pk=task.pk).update(heartbeat_at=long_ago, celery_id="lost-with-its-worker")
    assert reap_stale()["requeued"] == 1
    task.refresh_from_db()
    assert task.status == "queued" and task.attempts == 2 and "before it started" in task.message


def test_a_task_a_lost_worker_took_before_starting_it_is_sent_again(cluster, actor, settings):
    """Found by the fault loop (tests/integration/test_fault_loops.py, FACET_FAULT_SEED=3): a worker SIGKILLed
    between taking a task's message and claiming it left the task queued until the broker's visibility
    timeout (an hour). The worker's consumer fires Celery's `task_received`, here sent as the worker sends it
    (the request stands for Celery's: its name and args are what the handler reads)."""
    import time
    from types import SimpleNamespace

    from celery.signals import task_received

    import console.tasks  # noqa: F401  (what a worker imports: the Celery tasks and the signal's handler)
    from console.core.tasks.reaper import reap_stale

    settings.FACET_TASK_STALE_SECONDS = 0.5
    task = vms.request_create_vm(actor, vms.VMSpec(name="taken", vcpus=1, memory_bytes=GiB))
    Task.objects.filter(pk=task.pk).update(celery_id="taken-by-a-worker")
    task_received.send(sender=None, request=SimpleNamespace(name="facet.task.run", args=[str(task.uuid), 1]))
    assert reap_stale()["requeued"] == 0  # a worker that lives claims it in a moment

    time.sleep(0.6)  # and this one never does
    assert reap_stale()["requeued"] == 1
    task.refresh_from_db()
    assert task.status == "queued" and task.attempts == 2 and "before it started" in task.message


def test_media_of_other_apps_is_not_ejected_behind_their_back(cluster, actor, run_tasks):
    vm = create(actor, run_tasks)
    iso = Image.objects.get(name="rescue-iso")
    CdRom.objects.filter(vm=vm, slot=0).update(iso_path=str(iso.path), purpose="guest-tools")
    with pytest.raises(Conflict) as error:
        cdroms.request_eject(actor, vm, 0)
    assert "Guest Tools Unmount" in error.value.errors["slot"][0]
