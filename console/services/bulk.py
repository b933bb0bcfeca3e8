"""Bulk actions on many VMs: one parent task, a child per VM. Other apps add their actions to
`BULK_ACTIONS` (for instance `guest-tools-mount`)."""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from ..drivers.base import POWER_ACTIONS
from ..models import VM, Task
from . import audit
from .actors import Actor
from .errors import InvalidRequest, ServiceError
from .power import AlreadyDone, request_power
from .tasks import create_task, end_at_once, sending_together, start_bulk
from .vms import request_delete


@dataclass(frozen=True)
class BulkAction:
    child_kind: str
    # Creates the child task for one VM; raises ServiceError to refuse that VM.
    request: Callable[[Actor, VM, Task], Task]


def _power(action: str) -> BulkAction:
    return BulkAction("vm.power", lambda actor, vm, parent: request_power(actor, vm, action, parent))


BULK_ACTIONS: dict[str, BulkAction] = {
    **{action: _power(action) for action in POWER_ACTIONS},
    "delete": BulkAction("vm.delete", request_delete),
}
MAX_BULK_VMS = 10_000


def request_bulk(actor: Actor, action: str, vms) -> Task:
    """Apply `action` to every VM of the queryset. VMs that cannot take it get a failed child saying why,
    VMs already there a succeeded one, so the parent tells the whole story."""
    if action not in BULK_ACTIONS:
        raise InvalidRequest({"action": [f"unknown bulk action {action!r}; use one of {', '.join(BULK_ACTIONS)}"]})
    vms = list(vms.select_related("host", "cluster")[: MAX_BULK_VMS + 1])
    if not vms:
        raise InvalidRequest("no VM matches the selection")
    if len(vms) > MAX_BULK_VMS:
        raise InvalidRequest({"uuids": [f"at most {MAX_BULK_VMS} VMs in one bulk action"]})
    with transaction.atomic(), sending_together():
        parent = create_task(actor, "vm.bulk", None, enqueue=False, params={"action": action, "count": len(vms)})
        parent.entity_name = f"{action} on {len(vms)} VMs"
        parent.save(update_fields=["entity_name"])
        bulk_action = BULK_ACTIONS[action]
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
