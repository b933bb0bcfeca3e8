"""A worker provisions a bulk clone's batch of clones together (`vm.clone`'s `run_batch`): each clone ends as
a clone task run alone leaves it (its own certificate on its own tools ISO, its own customization media,
powered on), with a number of statements for the batch that a test pins; a batch that stops on one clone's
error runs each clone alone, which fails and undoes that clone only."""

from pathlib import Path

import pytest

from console.core.drivers.base import CDROM_SLOTS
from console.core.models import SimDomain, Task
from console.core.tasks.running import execute_batch
from console.models import VM, CdRom, Network
from console.services import vms
from console.services.bulk_clone import BulkCloneRequest, request_bulk_clone
from customization.models import VMCustomization
from customization.services.lifecycle import CustomizationRequest
from ngt.models import GuestTools, VMCertificate

MiB = 1024**2
CLOUD_CONFIG = "#cloud-config\nruncmd:\n  - echo hello\n"


@pytest.fixture
def golden(cluster, actor, run_tasks) -> VM:
    """A template with a disk, a NIC with a static address, and Guest Tools (its clones get an identity each)."""
    Network.objects.filter(name="lan").update(pool_end="10.0.0.200")
    vms.request_create_vm(actor, vms.VMSpec(name="golden", vcpus=1, memory_bytes=64 * MiB, disk_sizes=[MiB],
                                            nics=[vms.NicSpec(network=Network.objects.get(name="lan"), ip="auto")]))
    run_tasks()
    VM.objects.filter(name="golden").update(is_template=True)
    source = VM.objects.get(name="golden")
    GuestTools.objects.create(vm=source, enabled=True)
    return source


def batch_of(source: VM, actor, count: int) -> tuple[Task, list[tuple[str, int]]]:
    """A bulk clone of `count` with a cloud-config and power-on, and its children as one batch's items."""
    parent = request_bulk_clone(actor, BulkCloneRequest(
        source=source, count=count, name_pattern="web-{n:02}", power_on=True,
        options={"customization": CustomizationRequest(content=CLOUD_CONFIG)}))
    return parent, [(str(child.uuid), child.attempts) for child in parent.children.order_by("id")]


def test_a_batch_makes_every_clone_as_a_task_alone_would(golden, actor):
    parent, items = batch_of(golden, actor, 10)
    execute_batch(items)
    parent.refresh_from_db()
    assert parent.status == "succeeded" and parent.message == "10 of 10 done"
    assert all(child.message == f"{child.entity_name} created and powered on" for child in parent.children.all())
    clones = list(VM.objects.filter(parent=golden))
    assert len(clones) == 10 and {vm.power_state for vm in clones} == {"on"}
    for vm in clones:
        tools = GuestTools.objects.get(vm=vm)
        assert tools.iso_mounted and tools.certificate.vm_id == vm.pk
        customization = VMCustomization.objects.get(vm=vm)
        assert customization.status == "running" and str(vm.uuid).encode() in Path(
            customization.iso_path).read_bytes()
        media = {cdrom.purpose: cdrom.iso_path for cdrom in vm.cdroms.exclude(iso_path="")}
        assert media == {"guest-tools": media["guest-tools"], "customization": customization.iso_path}
        assert Path(media["guest-tools"]).is_file()
        domain = SimDomain.objects.get(uuid=vm.uuid)
        assert domain.power_state == "on" and sorted(domain.cdroms.values()) == sorted(media.values())
    assert VMCertificate.objects.filter(vm__parent=golden).values("serial").distinct().count() == 10


def test_a_batch_of_ten_clones_takes_a_bounded_number_of_statements(golden, actor, django_assert_max_num_queries):
    """Set-wise: about 12 statements a clone (the sim's own included), against about 47 one by one."""
    parent, items = batch_of(golden, actor, 10)
    with django_assert_max_num_queries(130):
        execute_batch(items)
    assert Task.objects.filter(parent=parent, status="succeeded").count() == 10


def test_a_clone_that_fails_in_a_batch_is_undone_alone_and_the_others_are_made(golden, actor):
    parent, items = batch_of(golden, actor, 4)
    doomed = VM.objects.get(name="web-03")
    # Every CD-ROM slot of one clone holds an image: its media find no drive, in the batch and again alone.
    CdRom.objects.filter(vm=doomed).delete()
    CdRom.objects.bulk_create(CdRom(vm=doomed, slot=slot, iso_path=f"/isos/{slot}.iso", purpose="image")
                              for slot in range(CDROM_SLOTS))
    execute_batch(items)
    parent.refresh_from_db()
    assert parent.status == "failed" and parent.message == "4 of 4 done, 1 failed"
    failed = parent.children.get(status="failed")
    assert failed.entity_uuid == doomed.uuid and "has all its 12 CD-ROMs in use" in failed.error
    assert not VM.objects.filter(pk=doomed.pk).exists()  # undone: no rows left
    assert not GuestTools.objects.filter(vm_id=doomed.pk).exists()
    container = Path(golden.disks.get().storage_container.path)
    assert not (container / "vms" / str(doomed.uuid)).exists()  # its disk and media files went with it
    assert not [iso for iso in (container / "guest-tools").iterdir() if str(doomed.uuid) in iso.name]
    made = VM.objects.filter(parent=golden)
    assert sorted(vm.name for vm in made) == ["web-01", "web-02", "web-04"]
    assert {vm.power_state for vm in made} == {"on"}
    assert all(GuestTools.objects.get(vm=vm).iso_mounted for vm in made)
