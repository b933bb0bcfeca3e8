"""Bulk actions on many VMs: one parent task, a child per VM. The actions are `registry.bulk_actions`
(the inventory's power actions and delete, other apps' own such as `guest-tools-mount`)."""

from django.db import transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers.base import POWER_ACTIONS
from console.core.errors import InvalidRequest, ServiceError
from console.core.models import Task
from console.core.registry import BulkAction, registry
from console.core.tasks import create_task, end_at_once, sending_together, start_bulk

from .power import POWER_LABELS, AlreadyDone, request_power
from .vms import request_delete

DESTRUCTIVE_POWER = {"power-off", "reset"}


def register_bulk_actions() -> None:
    """The inventory's own bulk actions: every power action, and delete."""
    for order, action in enumerate(POWER_ACTIONS):
        registry.bulk_actions.add(action, BulkAction(
            POWER_LABELS[action][0], "vm.power",
            lambda actor, vm, parent, action=action: request_power(actor, vm, action, parent),
            destructive=action in DESTRUCTIVE_POWER, order=order))
    registry.task_labels.add("vm.bulk", bulk_task_label)
    registry.bulk_actions.add("delete", BulkAction("Delete", "vm.delete", request_delete, destructive=True,
                                                   order=99))


def bulk_task_label(task: Task) -> str:
    """A bulk task as pages name it: "Bulk Power Off" (its entity name keeps the API's words for the CLI)."""
    action = registry.bulk_actions.get(task.params.get("action", ""))
    return f"Bulk {action.label}" if action else "Bulk action"


MAX_BULK_VMS = 10_000


def request_bulk(actor: Actor, action: str, vms) -> Task:
    """Apply `action` to every VM of the queryset. VMs that cannot take it get a failed child saying why,
    VMs already there a succeeded one, so the parent tells the whole story."""
    if action not in registry.bulk_actions:
        known = ", ".join(registry.bulk_actions)
        raise InvalidRequest({"action": [f"unknown bulk action {action!r}; use one of {known}"]})
    vms = list(vms.select_related("host", "cluster")[: MAX_BULK_VMS + 1])
    if not vms:
        raise InvalidRequest("no VM matches the selection")
    if len(vms) > MAX_BULK_VMS:
        raise InvalidRequest({"uuids": [f"at most {MAX_BULK_VMS} VMs in one bulk action"]})
    with transaction.atomic(), sending_together():
        parent = create_task(actor, "vm.bulk", None, enqueue=False, params={"action": action, "count": len(vms)})
        parent.entity_name = f"{action} on {len(vms)} VMs"
        parent.save(update_fields=["entity_name"])
        bulk_action = registry.bulk_actions[action]
        for vm in vms:
            try:
                with transaction.atomic():
                    bulk_action.request(actor, vm, parent)
            except AlreadyDone as exc:
                reason = " ".join(exc.errors["action"])
                end_at_once(actor, bulk_action.child_kind, vm, parent, Task.Status.SUCCEEDED, reason)
            except ServiceError as exc:
                end_at_once(actor, bulk_action.child_kind, vm, parent, Task.Status.FAILED, str(exc))
        start_bulk(parent)
        audit.record(actor, f"vm.bulk.{action}", parent, entity_type="task", count=len(vms), task=str(parent.uuid))
    return parent
