"""Check-then-act races (issue 14 item 14), with real threads and real transactions on the test database.
SQLite's IMMEDIATE transactions take turns as PostgreSQL's row locks make them: each request must check
again inside its transaction what another may have changed since it first looked."""

import threading

import pytest
from django.db import connection

from console.core.errors import Conflict
from console.models import VM, CdRom, Image, VirtualDisk
from console.services import cdroms, vms

GiB = 1024**3
pytestmark = pytest.mark.django_db(transaction=True)


def made(actor, run_tasks, name: str) -> VM:
    task = vms.request_create_vm(actor, vms.VMSpec(name=name, vcpus=1, memory_bytes=GiB, disk_sizes=[2**20]))
    run_tasks()
    return VM.objects.get(uuid=task.entity_uuid)


def in_thread(work, hold_after: str = "", hold_for: threading.Event | None = None) -> dict:
    """Run `work` in a thread on its own connection; with `hold_after`, it stops after its first query
    containing that text until `hold_for` is set (or 2 s passed), as a slow request would."""
    outcome, checked = {}, threading.Event()

    def hold(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if hold_after and hold_after in sql and not checked.is_set():
            checked.set()
            hold_for.wait(2)
        return result

    def run():
        try:
            with connection.execute_wrapper(hold):
                outcome["result"] = work()
        except Conflict as exc:
            outcome["refused"] = str(exc)
        finally:
            connection.close()

    outcome["thread"] = threading.Thread(target=run)
    outcome["checked"] = checked
    outcome["thread"].start()
    return outcome


def test_a_delete_racing_a_linked_clone_never_leaves_the_clone_without_its_base(cluster, actor, run_tasks):
    source = made(actor, run_tasks, "base-vm")
    clone_done = threading.Event()
    # The delete has looked for linked clones of the VM (none yet) when the clone request comes in.
    delete = in_thread(lambda: vms.request_delete(actor, source), hold_after='"backing_file" IN',
                       hold_for=clone_done)
    assert delete["checked"].wait(10)
    try:
        vms.request_clone(actor, VM.objects.get(pk=source.pk), "linked-1", linked=True)
        cloned = True
    except Conflict as exc:
        cloned, refusal = False, str(exc)
    clone_done.set()
    delete["thread"].join(30)
    deleted = "result" in delete
    assert deleted != cloned, "both the delete and a linked clone of the same VM went ahead"
    if deleted:  # the delete held its lock; the clone, let in after, found the VM deleting
        assert "VM base-vm is deleting" in refusal
    run_tasks()
    for disk in VirtualDisk.objects.exclude(backing_file=""):  # every linked disk's base is still there
        assert disk.storage_container.resolve(disk.backing_file).exists()


def test_two_inserts_at_once_take_two_slots_or_one_is_refused(cluster, actor, run_tasks):
    vm = made(actor, run_tasks, "cd-vm")
    CdRom.objects.create(vm=vm, slot=1)
    VM.objects.filter(pk=vm.pk).update(power_state="on")  # new drives only on the hot-pluggable bus
    iso = Image.objects.get(name="rescue-iso")
    go = threading.Barrier(4, timeout=10)

    def insert():
        go.wait()
        return cdroms.request_insert(actor, VM.objects.get(pk=vm.pk), iso).params["slot"]

    outcomes = [in_thread(insert) for _ in range(4)]
    for outcome in outcomes:
        outcome["thread"].join(30)
    slots = [o["result"] for o in outcomes if "result" in o]
    assert len(slots) == len(set(slots)) and set(slots) >= {0, 1}  # no slot taken twice; the empty ones first
    assert all(slot in (0, 1) or slot >= 4 for slot in slots)  # a running VM's new drives are SCSI (4 up)
    assert CdRom.objects.filter(vm=vm).exclude(iso_path="").count() == len(slots)
