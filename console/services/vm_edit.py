"""Edit a VM: name, description, vCPUs, memory, boot order, high availability. Hot where the hypervisor and
the guest allow it (vCPUs up to the maximum the VM was started with, memory through the balloon up to its
maximum), else written to the definition and shown as pending until the VM next powers off. Every edit raises
the VM's `version`, the API's ETag: an edit made against an older version is refused (412). High availability
is Facet's own (console/services/hosts.py reads it when a host fails): it takes effect at once, running or not."""

import logging
from typing import Any

from django.db import transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import DriverError, driver_for
from console.core.errors import Conflict, InvalidRequest, ServiceError
from console.core.models import Task
from console.core.tasks import Progress, create_task, task_kind
from console.core.units import iec

from ..models import VM
from ..models.inventory import MAX_VCPUS
from .power import BUSY_STATES
from .vms import MIN_MEMORY_BYTES, check_new_name, memory_in_use, vm_of_task

EDITABLE = ("name", "description", "vcpus", "memory_bytes", "boot_order", "high_availability")
HARDWARE = ("vcpus", "memory_bytes")
BOOT_DEVICES = ("hd", "cdrom", "network")
MAX_DESCRIPTION = 255
log = logging.getLogger(__name__)


class StaleVersion(ServiceError):
    """The edit was made against an older version of the VM than the one stored."""

    status_code = 412


def etag(vm: VM) -> str:
    return f'"{vm.version}"'


def version_of(if_match: str | None) -> int | None:
    """The version an `If-Match` header names (`"3"`, W/"3" or 3); None when there is none."""
    if not if_match or if_match.strip() == "*":
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidRequest({"If-Match": [f"{if_match!r} is not an ETag this API gave (a quoted version number)"]})
    return int(text)


def check_boot_order(value: Any) -> list[str]:
    order = value.split(",") if isinstance(value, str) else value
    if not isinstance(order, list) or not order or any(d not in BOOT_DEVICES for d in order) \
            or len(set(order)) != len(order):
        raise InvalidRequest({"boot_order": [f"give one or more of {', '.join(BOOT_DEVICES)}, each once, in order"]})
    return order


def check_high_availability(vm: VM, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest({"high_availability": ["give true or false"]})
    if value and vm.is_template:
        raise InvalidRequest({"high_availability": [
            f"{vm.name} is a template and never runs; mark the VMs made from it instead"]})


def shown(vm: VM, field: str) -> Any:
    """What a field will be once the pending changes apply (what an edit form starts from)."""
    return vm.pending.get(field, getattr(vm, field))


def _check(vm: VM, changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidRequest({name: ["this field cannot be edited"] for name in sorted(unknown)})
    if "name" in changes and changes["name"] != vm.name:
        check_new_name(vm.cluster, changes["name"])
    if len(changes.get("description", "")) > MAX_DESCRIPTION:
        raise InvalidRequest({"description": [f"at most {MAX_DESCRIPTION} characters"]})
    if "boot_order" in changes:
        changes["boot_order"] = ",".join(check_boot_order(changes["boot_order"]))
    if "high_availability" in changes:
        check_high_availability(vm, changes["high_availability"])
    host = vm.host
    if "vcpus" in changes:
        vcpus = changes["vcpus"]
        if not isinstance(vcpus, int) or not 1 <= vcpus <= MAX_VCPUS:
            raise InvalidRequest({"vcpus": [f"a VM has 1 to {MAX_VCPUS} vCPUs"]})
        if vcpus > host.cpus:
            raise InvalidRequest({"vcpus": [f"{vcpus} vCPUs is more than host {host.name} has ({host.cpus})"]})
    if "memory_bytes" in changes:
        memory = changes["memory_bytes"]
        if not isinstance(memory, int) or memory < MIN_MEMORY_BYTES:
            raise InvalidRequest({"memory_bytes": [f"a VM needs at least {iec(MIN_MEMORY_BYTES)} of memory"]})
        if memory > host.memory_bytes:
            raise InvalidRequest({"memory_bytes": [
                f"{iec(memory)} is more than host {host.name} has ({iec(host.memory_bytes)})"]})
        others = memory_in_use(host) - (vm.memory_bytes if vm.power_state != VM.PowerState.OFF else 0)
        if vm.power_state != VM.PowerState.OFF and others + memory > host.memory_bytes:
            raise Conflict({"memory_bytes": [
                f"host {host.name} has {iec(max(0, host.memory_bytes - others))} free for this VM, "
                f"less than {iec(memory)}"]})
    return {name: value for name, value in changes.items() if value != shown(vm, name)}


def request_update(actor: Actor, vm: VM, changes: dict[str, Any], expected_version: int | None = None) -> Task:
    """Check the changes, write them and the task that applies them; the name and description are Facet's
    own and take effect at once, vCPUs and memory once the task knows whether the guest took them."""
    if vm.power_state in BUSY_STATES:
        raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
    if vm.host is None:
        raise Conflict({"host": [f"VM {vm.name} is not placed on a host"]})
    if expected_version is not None and expected_version != vm.version:
        raise StaleVersion({"If-Match": [f"VM {vm.name} was changed meanwhile (version {vm.version}, not "
                                         f"{expected_version}); reload it and edit again"]})
    changes = _check(vm, dict(changes))
    with transaction.atomic():
        # Only the version the editor saw may change: a concurrent edit makes this update match no row.
        current = {"vcpus": shown(vm, "vcpus"), "memory_bytes": shown(vm, "memory_bytes")}
        wanted = {**current, **{k: v for k, v in changes.items() if k in HARDWARE}}
        facet_own = {k: v for k, v in changes.items() if k not in HARDWARE}
        if not VM.objects.filter(pk=vm.pk, version=vm.version).update(version=vm.version + 1, **facet_own):
            raise StaleVersion({"If-Match": [f"VM {vm.name} was changed meanwhile; reload it and edit again"]})
        previous = {name: getattr(vm, name) for name in facet_own}
        task = create_task(actor, "vm.update", vm, queue=vm.host.queue, params={
            "vcpus": wanted["vcpus"], "memory_bytes": wanted["memory_bytes"], "previous": previous,
            "hardware": sorted(k for k in changes if k in HARDWARE)})
        audit.record(actor, "vm.update", vm, task=str(task.uuid), changes=changes,
                     before={name: shown(vm, name) if name in HARDWARE else getattr(vm, name) for name in changes})
    vm.refresh_from_db()
    return task


def undo_update(task: Task) -> None:
    """A failed edit leaves the VM's own fields as they were."""
    if task.params.get("previous"):
        VM.objects.filter(uuid=task.entity_uuid).update(**task.params["previous"])


@task_kind("vm.update", undo=undo_update, label="Edit VM")
def run_update(task: Task, progress: Progress) -> str:
    vm = vm_of_task(task)
    driver = driver_for(vm)
    vcpus, memory = task.params["vcpus"], task.params["memory_bytes"]
    max_vcpus, max_memory = max(vcpus, vm.max_vcpus), max(memory, vm.max_memory_bytes)
    progress(20, "Changing the definition")
    driver.rename(vm)
    driver.set_boot_order(vm, vm.boot_order.split(","))
    if not task.params.get("hardware"):
        return f"{vm.name} updated"
    live = driver.set_cpu_memory(vm, vcpus, memory, max_vcpus, max_memory)
    values = {"max_vcpus": max_vcpus, "max_memory_bytes": max_memory}
    if live:
        VM.objects.filter(pk=vm.pk).update(vcpus=vcpus, memory_bytes=memory, pending={}, **values)
        return f"{vm.name} has {vcpus} vCPUs and {iec(memory)}" + (" now" if vm.power_state != "off" else "")
    VM.objects.filter(pk=vm.pk).update(pending={"vcpus": vcpus, "memory_bytes": memory}, **values)
    return f"{vcpus} vCPUs and {iec(memory)} at the next power cycle of {vm.name} (over what it runs with)"


def apply_pending(changes: list[tuple[VM, str]]) -> None:
    """The `powered` hook: a VM that went off boots next with its definition, which holds the pending
    changes; its domain takes the VM's name if it could not while running."""
    for vm, state in changes:
        if state != VM.PowerState.OFF:
            continue
        fresh = VM.objects.select_related("host").filter(pk=vm.pk).first()
        if fresh is None:
            continue
        if fresh.pending:
            VM.objects.filter(pk=vm.pk).update(pending={}, **fresh.pending)
        try:
            driver_for(fresh).rename(fresh)
        except (DriverError, ServiceError) as exc:
            log.warning("could not rename the domain of %s: %s", fresh.name, exc)
