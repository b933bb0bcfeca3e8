"""What the leader reads and writes in the database, from the event loop through a thread each time: the
hellos' identity checks and the guest state, both in batches; refusals in the audit log; the ISO released."""

import ipaddress
import json
import logging
import uuid
from datetime import datetime
from typing import NamedTuple

from django.db import close_old_connections, connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from console.core import audit
from console.core.actors import Actor
from console.core.registry import GuestReport, registry
from console.models import VM
from ngt.models import GuestTools, VMCertificate
from ngt.services import guest_tools, restore

log = logging.getLogger("ngt.daemon")
# A JSON list of ids as one bound parameter, expanded by the database (SQLite: JSON1, which JSONField needs).
EXPAND_IDS = {"sqlite": "SELECT value FROM json_each(%s)",
              "postgresql": "SELECT value::bigint FROM json_array_elements_text(%s::json)"}
# The same for a JSON list of texts, as a column named "value".
EXPAND_TEXTS = {"sqlite": "SELECT value FROM json_each(%s)",
                "postgresql": "SELECT value FROM json_array_elements_text(%s::json)"}
# The same for a JSON list of objects, one row each, with the columns {columns} names.
EXPAND_ROWS = {"sqlite": "SELECT {columns} FROM json_each(%s)",
               "postgresql": "SELECT * FROM json_to_recordset(%s::json) AS expanded({columns})"}


class Identity(NamedTuple):
    problem: str  # why this hello may not speak for the VM, "" when it may
    vm_id: int | None = None  # the key guest state is written under
    iso_mounted: bool = False  # whether a tools ISO may be waiting to be released


class IdentityRequest(NamedTuple):
    vm_uuid: str
    serial: str  # the certificate serial the hello names
    transport: str  # "tls" or "serial"


def check_identities(requests: list[IdentityRequest]) -> list[Identity]:
    """Each request's identity, in two queries whatever their number. On serial the channel is the identity;
    on TLS the certificate's serial must be the VM's current, unrevoked one (not a template's, not a
    revoked)."""
    close_old_connections()
    uuids = [as_uuid(request.vm_uuid) for request in requests]
    vms = {vm["uuid"]: vm for vm in VM.objects.filter(uuid__in=[each for each in uuids if each])
           .values("pk", "uuid", "name", "is_template", "guest_tools__iso_mounted")}
    current_serials = dict(VMCertificate.objects.filter(vm_id__in=ids_in([vm["pk"] for vm in vms.values()]),
                                                        revoked=False).values_list("vm_id", "serial"))
    return [identity(request, vms.get(vm_uuid), current_serials)
            for request, vm_uuid in zip(requests, uuids, strict=True)]


def as_uuid(text: str) -> uuid.UUID | None:
    """None for what is not a UUID (it names no VM, and must not fail the other requests' query)."""
    try:
        return uuid.UUID(text)
    except (TypeError, ValueError, AttributeError):
        return None


def identity(request: IdentityRequest, vm: dict | None, current_serials: dict[int, str]) -> Identity:
    if vm is None:
        return Identity(f"no VM {request.vm_uuid}")
    if vm["is_template"]:
        return Identity(f"{vm['name']} is a template")
    if request.transport == "tls" and (not request.serial or current_serials.get(vm["pk"]) != request.serial):
        return Identity(f"certificate {request.serial} is not the current certificate of VM {vm['name']}")
    return Identity("", vm["pk"], bool(vm["guest_tools__iso_mounted"]))


def stale_serials(serials: list[str]) -> list[str]:
    """Those of `serials` that are no VM's current certificate (revoked, or their VM deleted). One query
    returning only those, whatever the number of sessions: this runs at every flush."""
    close_old_connections()
    quote, table = connection.ops.quote_name, connection.ops.quote_name(VMCertificate._meta.db_table)
    serial, revoked = (quote(VMCertificate._meta.get_field(name).column) for name in ("serial", "revoked"))
    listed = EXPAND_TEXTS[connection.vendor]
    # Only column and table names go into the text; the serials are bound.
    sql = (f"SELECT listed.value FROM ({listed}) AS listed WHERE NOT EXISTS "  # noqa: S608
           f"(SELECT 1 FROM {table} AS issued WHERE issued.{serial} = listed.value AND NOT issued.{revoked})")
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(serials)])
        return [row[0] for row in cursor.fetchall()]


def record_refusal(vm_uuid: str | None, reason: str, peer: str) -> None:
    """`peer` is an agent's IP address, or what else carried the session (a serial channel)."""
    log.warning("refused an agent session (VM %s, from %s): %s", vm_uuid or "unknown", peer, reason)
    close_old_connections()
    vm = VM.objects.filter(uuid=vm_uuid).first() if vm_uuid else None
    audit.record(Actor(user=None, source_address=ip_address_or_none(peer)), "ngt.session.refused", vm,
                 entity_type="vm", reason=reason, vm_uuid=vm_uuid or "", peer=peer)


def ip_address_or_none(peer: str) -> str | None:
    """The audit log's source address is an IP address column (on PostgreSQL a channel's path is an error)."""
    try:
        return str(ipaddress.ip_address(peer))
    except ValueError:
        return None


# Every batch is a few statements whatever the number of VMs, each VM's values in one JSON parameter: the
# ORM's bound parameter per value (or its statement per VM) costs Python, and this runs in a thread whose
# Python holds the GIL the event loop waits for (at 4,000 agents a flush stalled the loop for 100 ms or
# more; 800 hellos written one update each, for 200 to 400 ms).


def ids_in(ids: list[int]) -> RawSQL:
    """`ids` for an `__in` lookup as one JSON parameter."""
    return RawSQL(EXPAND_IDS[connection.vendor], [json.dumps(ids)])  # noqa: S611 (constant SQL, bound data)


def expanded_rows(columns: list[str]) -> str:
    """SQL selecting GuestTools `columns` from one JSON parameter, a list of objects keyed by column."""
    fields, quote = [GuestTools._meta.get_field(column) for column in columns], connection.ops.quote_name
    if connection.vendor == "sqlite":  # json_extract gives booleans as 1/0 and JSON values as their text
        selected = ", ".join(f"json_extract(value, '$.{field.column}') AS {quote(field.column)}" for field in fields)
    else:
        selected = ", ".join(f"{quote(field.column)} {field.db_type(connection)}" for field in fields)
    return EXPAND_ROWS[connection.vendor].format(columns=selected)


def update_facts(rows: list[dict], now: datetime) -> None:
    """One UPDATE for `rows`, each {"vm_id": ..., column: value, ...} with the same columns."""
    columns = sorted(rows[0].keys() - {"vm_id"})
    quote, table = connection.ops.quote_name, connection.ops.quote_name(GuestTools._meta.db_table)
    assignments = "".join(f"{quote(column)} = facts.{quote(column)}, " for column in columns)
    facts = expanded_rows(["vm_id", *columns])  # fails on a name that is not a GuestTools column
    # Only names of GuestTools' columns go into the text; the values are bound.
    matched = f"{table}.vm_id = facts.vm_id"
    sql = f"UPDATE {table} SET {assignments}updated_at = %s FROM ({facts}) AS facts WHERE {matched}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(now), json.dumps(rows)])


def write_batch(heard: set[int], changes: dict[int, dict]) -> None:
    """Everything heard since the last batch, by VM id: `last_seen` of the VMs heard from (a hello or a
    heartbeat) at the batch's time, at most one flush interval late, in one statement; then the facts that
    changed (a hello's, a link's end), one statement for each set of fields changed together."""
    close_old_connections()
    now = timezone.now()
    with transaction.atomic():  # one commit (one fsync) per batch, not one per VM
        if heard:
            GuestTools.objects.filter(vm_id__in=ids_in(sorted(heard))).update(last_seen=now, updated_at=now)
        for rows in rows_by_fields(changes).values():
            update_facts(rows, now)


def rows_by_fields(changes: dict[int, dict]) -> dict[frozenset, list[dict]]:
    """`changes` as rows for `update_facts`, grouped by the fields they change (a hello's facts, or only
    `link_active` when a link ended: two groups in a batch, usually)."""
    groups: dict[frozenset, list[dict]] = {}
    for vm_id, fields in changes.items():
        groups.setdefault(frozenset(fields), []).append({"vm_id": vm_id, **fields})
    return groups


def linked(vm_uuid: str, serial: str) -> None:
    """After a hello: the ISO whose serial the agent linked with is no longer needed."""
    close_old_connections()
    vm = VM.objects.filter(uuid=vm_uuid).select_related("host").first()
    if vm is not None and guest_tools.release_tools_iso(vm, serial):
        log.info("VM %s linked with certificate %s: its tools ISO is ejected and deleted", vm.name, serial)


def relay_customization(results: dict[int, tuple[str, str]]) -> None:
    """The guests' own customization results (cloud-init's), by VM id, to the app that follows customization
    (its `guest_reported` VM hook): one call per batch, whatever the number of guests."""
    close_old_connections()
    reports = [GuestReport(vm_id, status, message) for vm_id, (status, message) in results.items()]
    for guest_reported in registry.hooks("guest_reported"):
        guest_reported(reports)


def running_vms(host_name: str) -> list[VM]:
    close_old_connections()
    return list(VM.objects.filter(host__name=host_name, power_state=VM.PowerState.ON).select_related("host"))


def restore_request(vm_uuid: str, message: dict) -> dict:
    """A self-service restore request (ngt/services/restore.py), in the leader's thread."""
    close_old_connections()
    return restore.handle(vm_uuid, message)
