"""What the leader reads and writes in the database, from the event loop through a thread each time: the
identity check of a session, the batched guest state, refusals in the audit log, the ISO released."""

import json
import logging
from typing import NamedTuple

from django.db import close_old_connections, connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from console.models import VM
from console.services import audit
from console.services.actors import Actor
from ngt import services
from ngt.models import GuestTools, VMCertificate

log = logging.getLogger("ngt.service")
# A JSON list of ids as one bound parameter, expanded by the database (SQLite: JSON1, which JSONField needs).
EXPAND_IDS = {"sqlite": "SELECT value FROM json_each(%s)",
              "postgresql": "SELECT value::bigint FROM json_array_elements_text(%s::json)"}


class Identity(NamedTuple):
    problem: str  # why this hello may not speak for the VM, "" when it may
    vm_id: int | None = None  # the key guest state is written under
    iso_mounted: bool = False  # whether a tools ISO may be waiting to be released


def check_identity(vm_uuid: str, serial: str, transport: str) -> Identity:
    """On serial the channel is the identity; on TLS the certificate's serial must be the VM's current,
    unrevoked one (not a template's, not a revoked)."""
    close_old_connections()
    vm = VM.objects.filter(uuid=vm_uuid).values("pk", "name", "is_template", "guest_tools__iso_mounted").first()
    if vm is None:
        return Identity(f"no VM {vm_uuid}")
    if vm["is_template"]:
        return Identity(f"{vm['name']} is a template")
    if transport == "tls" and not VMCertificate.objects.filter(vm_id=vm["pk"], serial=serial, revoked=False).exists():
        return Identity(f"certificate {serial} is not the current certificate of VM {vm['name']}")
    return Identity("", vm["pk"], bool(vm["guest_tools__iso_mounted"]))


def record_refusal(vm_uuid: str | None, reason: str, peer: str) -> None:
    log.warning("refused an agent session (VM %s, from %s): %s", vm_uuid or "unknown", peer, reason)
    close_old_connections()
    vm = VM.objects.filter(uuid=vm_uuid).first() if vm_uuid else None
    audit.record(Actor(user=None, source_address=peer or None), "ngt.session.refused", vm, entity_type="vm",
                 reason=reason, vm_uuid=vm_uuid or "")


def ids_in(ids: list[int]) -> RawSQL:
    """`ids` for an `__in` lookup as one JSON parameter: the ORM's bound parameter per id costs about 3 us of
    Python each, and this runs in a thread whose Python holds the GIL the event loop waits for (at 4,000
    agents a flush stalled the loop for 100 ms or more)."""
    return RawSQL(EXPAND_IDS[connection.vendor], [json.dumps(ids)])  # noqa: S611 (constant SQL, bound data)


def write_batch(heard: set[int], changes: dict[int, dict]) -> None:
    """Everything heard since the last batch, by VM id: the VMs that only sent heartbeats in one statement, at
    the batch's time (at most one flush interval late), one update for each VM whose facts changed."""
    close_old_connections()
    now = timezone.now()
    only_heard = sorted(heard - changes.keys())
    with transaction.atomic():  # one commit (one fsync) per batch, not one per VM
        if only_heard:
            GuestTools.objects.filter(vm_id__in=ids_in(only_heard)).update(last_seen=now, updated_at=now)
        for vm_id, fields in changes.items():
            seen = {"last_seen": now} if vm_id in heard else {}
            GuestTools.objects.filter(vm_id=vm_id).update(**{**fields, **seen}, updated_at=now)


def linked(vm_uuid: str, serial: str) -> None:
    """After a hello: the ISO whose serial the agent linked with is no longer needed."""
    close_old_connections()
    vm = VM.objects.filter(uuid=vm_uuid).select_related("host").first()
    if vm is not None and services.release_tools_iso(vm, serial):
        log.info("VM %s linked with certificate %s: its tools ISO is ejected and deleted", vm.name, serial)


def running_vms(host_name: str) -> list[VM]:
    close_old_connections()
    return list(VM.objects.filter(host__name=host_name, power_state=VM.PowerState.ON).select_related("host"))
