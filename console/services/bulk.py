"""Bulk actions on many VMs: one parent task, a child per VM. The actions are `registry.bulk_actions`
(the inventory's power actions and delete, other apps' own such as `guest-tools-mount`)."""

from collections.abc import Mapping
from typing import Any

from django import forms
from django.db import transaction
from django.db.models import QuerySet
from django_filters import Filter

from console.core import audit
from console.core.actors import Actor
from console.core.drivers.base import POWER_ACTIONS
from console.core.errors import InvalidRequest, ServiceError
from console.core.models import Task
from console.core.registry import BulkAction, registry
from console.core.tasks import create_task, end_at_once, sending_together, start_bulk

from ..filtersets import vm_filterset
from ..models import VM
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
FEW = 5  # a delete of more VMs than this needs their count confirmed


def vms_matching(filters: Mapping[str, Any], *, everything: bool = False, among: QuerySet | None = None) -> QuerySet:
    """The VMs a bulk action's filter names: exactly those the VM list shows with the same filter (of `among`,
    all VMs by default: the API's list holds templates too, a page of the console one kind). A key the list
    does not know is refused rather than ignored (ignored, `nmae=x` would reach every VM), and a filter
    that is empty matches everything only when the caller says so (`everything`)."""
    filterset_class = vm_filterset()
    unknown = sorted(str(key) for key in filters if key not in filterset_class.base_filters)
    if unknown:
        known = ", ".join(filterset_class.base_filters)
        raise InvalidRequest({"filter": [f"unknown filter key(s) {', '.join(unknown)}; use {known}"]})
    for key, value in filters.items():
        if not _plain(value) and not (isinstance(value, list) and all(_plain(item) for item in value)):
            raise InvalidRequest({"filter": [f"{key}: give a text, number, true/false or a list of them"]})
        if isinstance(value, list) and not _takes_many(filterset_class.base_filters[key]):
            # One value per key, as the list's query string gives it (a list made the form widget fail: a 500).
            raise InvalidRequest({"filter": [f"{key}: give one value, not a list"]})
    if all(_empty(value) for value in filters.values()) and not everything:
        raise InvalidRequest({"filter": ['an empty filter names every VM; send "all": true if that is meant']})
    filterset = filterset_class(data=filters, queryset=VM.objects.all() if among is None else among)
    if not filterset.is_valid():
        raise InvalidRequest({"filter": [f"{key}: {' '.join(problems)}"
                                         for key, problems in filterset.errors.items()]})
    return filterset.qs


def _takes_many(filter_: Filter) -> bool:
    return issubclass(filter_.field_class, forms.MultipleChoiceField)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _empty(value: Any) -> bool:
    return value in (None, "") or (isinstance(value, list) and all(item in (None, "") for item in value))


def needs_count(action: str, count: int) -> bool:
    """Whether the caller must confirm the count: a delete of more than a few VMs."""
    return action == "delete" and count > FEW


def request_bulk(actor: Actor, action: str, vms: QuerySet, params: dict | None = None, *,
                 confirm_count: int | None = None) -> Task:
    """Apply `action` to every VM of the queryset. VMs that cannot take it get a failed child saying why,
    VMs already there a succeeded one, so the parent tells the whole story. `confirm_count` is the number
    of VMs the caller was shown; when given it must still be the number, and a delete of more than FEW
    VMs needs it."""
    if action not in registry.bulk_actions:
        known = ", ".join(registry.bulk_actions)
        raise InvalidRequest({"action": [f"unknown bulk action {action!r}; use one of {known}"]})
    params = _checked_params(registry.bulk_actions[action], action, params or {})
    vms = list(vms.select_related("host", "cluster").order_by("name", "id")[: MAX_BULK_VMS + 1])
    if not vms:
        raise InvalidRequest("no VM matches the selection")
    if len(vms) > MAX_BULK_VMS:
        raise InvalidRequest({"uuids": [f"at most {MAX_BULK_VMS} VMs in one bulk action"]})
    if confirm_count is not None and confirm_count != len(vms):
        raise InvalidRequest({"confirm_count": [
            f"the selection holds {len(vms)} VMs, not {confirm_count}; look at it again"]})
    if confirm_count is None and needs_count(action, len(vms)):
        raise InvalidRequest({"confirm_count": [
            f"this would {action} {len(vms)} VMs; to go ahead, send their number as confirm_count"]})
    with transaction.atomic(), sending_together():
        parent = create_task(actor, "vm.bulk", None, enqueue=False,
                             params={"action": action, "count": len(vms), **({"params": params} if params else {})})
        parent.entity_name = f"{action} on {len(vms)} VMs"
        parent.save(update_fields=["entity_name"])
        bulk_action = registry.bulk_actions[action]
        for vm in vms:
            try:
                with transaction.atomic():
                    bulk_action.request(actor, vm, parent, **params)
            except AlreadyDone as exc:
                reason = " ".join(exc.errors["action"])
                end_at_once(actor, bulk_action.child_kind, vm, parent, Task.Status.SUCCEEDED, reason)
            except ServiceError as exc:
                end_at_once(actor, bulk_action.child_kind, vm, parent, Task.Status.FAILED, str(exc))
        start_bulk(parent)
        audit.record(actor, f"vm.bulk.{action}", parent, entity_type="task", count=len(vms), task=str(parent.uuid),
                     **params)
    return parent


def _checked_params(bulk_action: BulkAction, action: str, params: dict) -> dict:
    for name, value in params.items():
        if name not in bulk_action.params:
            takes = ", ".join(bulk_action.params) or "none"
            raise InvalidRequest({f"params.{name}": [f"{action} takes no parameter {name!r} (it takes: {takes})"]})
        wanted = bulk_action.params[name]
        if type(value) is not wanted:
            raise InvalidRequest({f"params.{name}": [f"give a {wanted.__name__}"]})
    return params
