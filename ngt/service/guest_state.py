"""What the leader reads and writes in the database, from the event loop through a thread each time: the
identity check of a session, the batched guest state, refusals in the audit log, the ISO released."""

import logging

from django.db import close_old_connections, transaction
from django.utils import timezone

from console.models import VM
from console.services import audit
from console.services.actors import Actor
from ngt import services
from ngt.models import GuestTools, VMCertificate

log = logging.getLogger("ngt.service")


def check_identity(vm_uuid: str, serial: str, transport: str) -> str:
    """Why this hello may not speak for the VM ("" when it may). On serial the channel is the identity; on
    TLS the certificate's serial must be the VM's current, unrevoked one (not a template's, not a revoked)."""
    close_old_connections()
    vm = VM.objects.filter(uuid=vm_uuid).first()
    if vm is None:
        return f"no VM {vm_uuid}"
    if vm.is_template:
        return f"{vm.name} is a template"
    if transport == "tls" and not VMCertificate.objects.filter(vm=vm, serial=serial, revoked=False).exists():
        return f"certificate {serial} is not the current certificate of VM {vm.name}"
    return ""


def record_refusal(vm_uuid: str | None, reason: str, peer: str) -> None:
    log.warning("refused an agent session (VM %s, from %s): %s", vm_uuid or "unknown", peer, reason)
    close_old_connections()
    vm = VM.objects.filter(uuid=vm_uuid).first() if vm_uuid else None
    audit.record(Actor(user=None, source_address=peer or None), "ngt.session.refused", vm, entity_type="vm",
                 reason=reason, vm_uuid=vm_uuid or "")


def write_batch(changes: dict[str, dict]) -> None:
    """One update per VM for everything heard since the last batch (heartbeats only move last_seen)."""
    close_old_connections()
    now = timezone.now()
    only_heard = [vm_uuid for vm_uuid, fields in changes.items() if fields.keys() == {"last_seen"}]
    with transaction.atomic():  # one commit (one fsync) per batch, not one per VM
        # Heartbeats alone: one statement for all, at the batch's time (at most one flush interval late).
        for chunk in range(0, len(only_heard), 500):
            GuestTools.objects.filter(vm__uuid__in=only_heard[chunk:chunk + 500]).update(last_seen=now, updated_at=now)
        for vm_uuid, fields in changes.items():
            if fields.keys() != {"last_seen"}:
                GuestTools.objects.filter(vm__uuid=vm_uuid).update(**fields, updated_at=now)


def linked(vm_uuid: str, serial: str) -> None:
    """After a hello: the ISO whose serial the agent linked with is no longer needed."""
    close_old_connections()
    vm = VM.objects.filter(uuid=vm_uuid).select_related("host").first()
    if vm is not None and services.release_tools_iso(vm, serial):
        log.info("VM %s linked with certificate %s: its tools ISO is ejected and deleted", vm.name, serial)


def running_vms(host_name: str) -> list[VM]:
    close_old_connections()
    return list(VM.objects.filter(host__name=host_name, power_state=VM.PowerState.ON).select_related("host"))
