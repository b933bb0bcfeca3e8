"""Self-service restore, the console's side (`ngt/services/restore.py` as the leader calls it for an agent's `ssr`
request) on the sim hypervisor, whose disks are real files: list, attach, detach, expiry, and every refusal."""

from datetime import timedelta

import pytest
from django.utils import timezone

from console.core.errors import Conflict
from console.core.models import AuditEvent, SimDomain, Task
from console.core.tasks import sending
from console.models import VM, Image, Snapshot
from console.services import snapshots, vms
from ngt.models import RestoreDisk
from ngt.services import guest_tools, restore

MiB = 1024**2


@pytest.fixture
def guest_vm(cluster, actor, run_tasks, monkeypatch):
    """web-1, running, with a disk, two snapshots and self-service-restore on."""
    monkeypatch.setattr(sending, "send", lambda task: None)
    vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=256 * MiB, power_on=True,
                                            image=Image.objects.get(name="base-disk")))
    run_tasks()
    vm = VM.objects.get(name="web-1")
    for name in ("monday", "tuesday"):
        snapshots.request_create(actor, vm, name)
        run_tasks()
    guest_tools.set_capabilities(actor, vm, ["self-service-restore"])
    return vm


def ask(vm, action, snapshot="") -> dict:
    return restore.handle(str(vm.uuid), {"id": "a1", "type": "ssr", "action": action, "snapshot": snapshot})


def attached_disks(vm) -> dict:
    return SimDomain.objects.get(uuid=vm.uuid).disks


def test_list_attach_and_detach(guest_vm):
    listed = ask(guest_vm, "list")
    assert listed["ok"] and [s["name"] for s in listed["snapshots"]] == ["monday", "tuesday"]
    assert listed["snapshots"][0]["consistent"] is False  # taken while on, no agent

    answer = ask(guest_vm, "attach", "monday")
    assert answer["ok"], answer
    (serial,) = answer["serials"]
    assert serial.startswith("facet-ssr-") and len(serial) <= 20
    overlay = attached_disks(guest_vm)[serial]
    assert overlay.endswith(".qcow2") and "ssr-" in overlay
    assert Task.objects.get(kind="ngt.ssr.attach").status == "succeeded"
    assert ask(guest_vm, "list")["snapshots"][0]["attached"] is True
    assert ask(guest_vm, "attach", "monday")["serials"] == [serial]  # again: the same disk

    with pytest.raises(Conflict, match="attached to its VM for self-service restore"):
        snapshots.request_delete(actor_of(), Snapshot.objects.get(name="monday"))

    answer = ask(guest_vm, "detach", "monday")
    assert answer == {"ok": True, "detached": ["monday"]}
    assert attached_disks(guest_vm) == {} and not RestoreDisk.objects.exists()
    from pathlib import Path
    assert not Path(overlay).exists()
    actions = set(AuditEvent.objects.filter(entity_uuid=guest_vm.uuid).values_list("action", flat=True))
    assert {"ngt.ssr.list", "ngt.ssr.attach", "ngt.ssr.detach"} <= actions


def actor_of():
    from console.core.actors import Actor
    return Actor.system()


def test_refused_when_the_capability_is_off(guest_vm, actor):
    guest_tools.set_capabilities(actor, guest_vm, ["vss-snapshot"])
    answer = ask(guest_vm, "list")
    assert answer == {"ok": False, "error": "the self-service-restore capability is off for this VM; an "
                                            "administrator turns it on in the VM's Guest Tools panel"}
    assert not ask(guest_vm, "attach", "monday")["ok"] and attached_disks(guest_vm) == {}
    assert AuditEvent.objects.filter(action="ngt.ssr.refused").count() == 2


def test_another_vms_snapshot_is_not_found(guest_vm, actor, run_tasks):
    vms.request_create_vm(actor, vms.VMSpec(name="other", vcpus=1, memory_bytes=256 * MiB,
                                            image=Image.objects.get(name="base-disk")))
    run_tasks()
    other = VM.objects.get(name="other")
    snapshots.request_create(actor, other, "secret")
    run_tasks()
    answer = ask(guest_vm, "attach", "secret")
    assert answer == {"ok": False, "error": "VM web-1 has no snapshot named 'secret' (ssr list shows them)"}
    answer = ask(guest_vm, "attach", str(Snapshot.objects.get(name="secret").uuid))
    assert not answer["ok"] and attached_disks(guest_vm) == {}
    refused = AuditEvent.objects.filter(action="ngt.ssr.refused", entity_uuid=guest_vm.uuid).first()
    assert refused.detail["snapshot"] and "has no snapshot" in refused.detail["reason"]


def test_a_snapshot_being_deleted_is_not_attached(guest_vm, actor):
    snapshots.request_delete(actor, Snapshot.objects.get(name="tuesday"))  # queued: the snapshot is deleting
    answer = ask(guest_vm, "attach", "tuesday")
    assert answer == {"ok": False, "error": "snapshot tuesday is deleting; it cannot be attached"}
    assert attached_disks(guest_vm) == {}


def test_at_most_so_many_snapshots_attached_at_a_time(guest_vm, actor, run_tasks, settings):
    settings.FACET_SSR_MAX_DISKS = 1
    assert ask(guest_vm, "attach", "monday")["ok"]
    answer = ask(guest_vm, "attach", "tuesday")
    assert answer == {"ok": False, "error": "1 snapshots are attached to this VM already, the most at a time; "
                                            "detach one first (ssr detach)"}
    assert len(attached_disks(guest_vm)) == 1


def test_a_failed_attach_leaves_no_disk_overlay_or_row(guest_vm):
    SimDomain.objects.filter(uuid=guest_vm.uuid).delete()  # the hypervisor lost the domain
    answer = ask(guest_vm, "attach", "monday")
    assert not answer["ok"] and "is not defined on the hypervisor" in answer["error"]
    assert not RestoreDisk.objects.exists()
    assert not list(guest_vm.disks.get().path.parent.glob("ssr-*"))


def test_an_attachment_past_its_time_is_detached(guest_vm, run_tasks, monkeypatch):
    sent = []
    monkeypatch.setattr(restore.commands, "send_command", lambda *args, **kwargs: sent.append((args, kwargs)))
    assert ask(guest_vm, "attach", "monday")["ok"]
    assert restore.expire() == 0  # not yet
    RestoreDisk.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert restore.expire() == 1
    assert restore.expire() == 0  # its detach is queued already
    assert sent[0][0][1] == "ssr_unmount" and sent[0][1]["arguments"] == {"snapshot": "monday"}
    (task,) = run_tasks()
    assert task.kind == "ngt.ssr.detach" and task.status == "succeeded"
    assert attached_disks(guest_vm) == {} and not RestoreDisk.objects.exists()


def test_deleting_the_vm_removes_its_restore_overlays(guest_vm, actor, run_tasks):
    answer = ask(guest_vm, "attach", "monday")
    from pathlib import Path
    overlay = Path(attached_disks(guest_vm)[answer["serials"][0]])
    vms.request_delete(actor, guest_vm)
    (task,) = run_tasks()
    assert task.status == "succeeded", task.error
    assert not overlay.exists() and not VM.objects.filter(name="web-1").exists()
