"""The Snapshots panel of a VM's page (loaded by htmx; its forms are plain POSTs that work without JavaScript),
and the confirmation pages of revert and delete."""

from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR
from console.core.errors import ServiceError
from console.core.models import Task
from console.core.views import actor, confirm_then_start, refuse, role_required, task_started

from ..models import VM, Snapshot
from ..services import snapshots


def _vm(uuid) -> VM:
    return get_object_or_404(VM.objects.select_related("host", "cluster"), uuid=uuid)


def _snapshot(uuid, snapshot) -> Snapshot:
    return get_object_or_404(Snapshot.objects.select_related("vm__host", "vm__cluster"), vm__uuid=uuid,
                             uuid=snapshot)


@role_required()
def snapshot_panel(request, uuid):
    vm = _vm(uuid)
    return render(request, "console/snapshot_panel.html", {
        "vm": vm, "tree": snapshots.tree(vm),
        "busy": Task.objects.filter(entity_uuid=vm.uuid, kind__in=snapshots.KINDS,
                                    status__in=snapshots.ACTIVE).first(),
    })


@require_POST
@role_required(OPERATOR)
def snapshot_create(request, uuid):
    vm = _vm(uuid)
    back = reverse("vm-detail", args=[vm.uuid])
    try:
        task = snapshots.request_create(actor(request), vm, request.POST.get("name", "").strip(),
                                        request.POST.get("description", "").strip())
    except ServiceError as error:
        return refuse(request, error, back, labels={"name": "Snapshot name", "description": "Description"})
    return task_started(request, task, back)


@role_required(OPERATOR)
def snapshot_revert(request, uuid, snapshot):
    target = _snapshot(uuid, snapshot)
    vm = target.vm
    running = vm.power_state in (VM.PowerState.ON, VM.PowerState.PAUSED)
    text = (f"The disks of {vm.name} go back to how they were at snapshot {target.name}; what was written "
            "since, and is in no other snapshot, is lost.")
    if running:
        text += (f" {vm.name} is {vm.power_state}: it is powered off at once, losing its running state (what "
                 "is in its memory and not yet on its disks), and powered on again after the revert.")
    return confirm_then_start(request, {
        "title": f"Revert {vm.name} to {target.name}?", "text": text, "button": "Revert",
        "action": reverse("snapshot-revert", args=[vm.uuid, target.uuid]),
        "hidden": {"confirm": "yes"} if running else {},
    }, lambda: snapshots.request_revert(actor(request), target, confirm=request.POST.get("confirm") == "yes"),
        back=reverse("vm-detail", args=[vm.uuid]))


@role_required(OPERATOR)
def snapshot_delete(request, uuid, snapshot):
    target = _snapshot(uuid, snapshot)
    vm = target.vm
    return confirm_then_start(request, {
        "title": f"Delete snapshot {target.name}?", "button": "Delete snapshot",
        "text": f"{vm.name} can no longer be reverted to {target.name}. Its files are merged with what stands "
                "on them (the next snapshot, or the VM's current disks), which may take a while for large "
                "disks; the VM keeps running.",
        "action": reverse("snapshot-delete", args=[vm.uuid, target.uuid]),
    }, lambda: snapshots.request_delete(actor(request), target), back=reverse("vm-detail", args=[vm.uuid]))
