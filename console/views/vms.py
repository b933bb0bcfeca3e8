"""VM pages: the list with filters and bulk actions, the detail page, create, clone, power, CD-ROMs."""

from dataclasses import dataclass

from django.contrib import messages
from django.db.models import Prefetch
from django.http import QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR
from console.core.drivers.base import POWER_TRANSITIONS
from console.core.errors import ServiceError
from console.core.models import AuditEvent, Task
from console.core.registry import registry
from console.core.views import PAGE_SIZES, actor, as_uuid, paginate, query_without, refuse, role_required, task_started

from ..filtersets import vm_filterset
from ..forms.vms import (
    CloneForm,
    DiskFormSet,
    NicFormSet,
    VMCreateForm,
    clone_options,
    show_service_error,
    vm_spec,
    with_options,
)
from ..models import VM, Image, Nic, Snapshot
from ..services import bulk, cdroms, power, vms


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    order_by: str = ""  # database field to sort on; empty when the column is not in the database


VM_COLUMNS = [
    Column("name", "Name", "name"),
    Column("power_state", "Power", "power_state"),
    Column("host", "Host", "host__name"),
    Column("vcpus", "vCPUs", "vcpus"),
    Column("memory", "Memory", "memory_bytes"),
    Column("ips", "IP addresses"),
]  # then the columns other apps registered (registry.vm_columns)
ORDERINGS = {c.order_by for c in VM_COLUMNS if c.order_by}


def destructive_actions() -> set[str]:
    return {name for name, action in registry.bulk_actions.items() if action.destructive}


def vm_queryset():
    related = [name for column in registry.vm_columns.values() for name in column.related]
    return VM.objects.select_related("host", *related).prefetch_related(
        Prefetch("nics", queryset=Nic.objects.only("id", "vm_id", "ip", "index")))


def _ordering(request) -> str:
    ordering = request.GET.get("ordering", "name")
    return ordering if ordering.lstrip("-") in ORDERINGS else "name"


def _vm_list(request, templates: bool):
    filterset = vm_filterset()(request.GET, queryset=vm_queryset().filter(is_template=templates))
    ordering = _ordering(request)
    queryset = filterset.qs.order_by(ordering, "id") if filterset.is_valid() else VM.objects.none()
    page = paginate(request, queryset)
    return render(request, "console/vm_list.html", {
        "filterset": filterset, "page": page, "columns": VM_COLUMNS, "ordering": ordering,
        "app_columns": registry.vm_columns.ordered(),
        "app_filters": [filterset.form[name] for name in registry.vm_filters],
        "templates": templates, "bulk_actions": _bulk_menu(templates),
        "destructive": destructive_actions(), "query": query_without(request, "page"), "page_sizes": PAGE_SIZES,
        "sort_query": query_without(request, "ordering", "page"), "filter_query": query_without(request, "page",
                                                                                                 "page_size"),
    })


def option_templates() -> list[str]:
    """The form sections of other apps' VM options (a customization script), for create and clone."""
    return [option.template for option in registry.vm_options.values()]


def _bulk_menu(templates: bool) -> list[tuple[str, str]]:
    """(action, label) of the list's bulk menu; templates only get deleted."""
    actions = sorted(registry.bulk_actions.items(), key=lambda item: item[1].order)
    return [(name, action.label) for name, action in actions if not templates or name == "delete"]


@role_required()
def vm_list(request):
    return _vm_list(request, templates=False)


@role_required()
def template_list(request):
    return _vm_list(request, templates=True)


@require_POST
@role_required(OPERATOR)
def vm_bulk(request):
    """Apply an action to the selected VMs, or to every VM matching the list's filter."""
    back = request.POST.get("next") or reverse("vm-list")
    if request.POST.get("scope") == "all":
        filterset = vm_filterset()(QueryDict(request.POST.get("filter", "")), queryset=VM.objects.all())
        if not filterset.is_valid():
            messages.error(request, "The list's filter is not valid any more; apply it again.")
            return redirect(back)
        selected = filterset.qs
    else:
        uuids = [as_uuid(value) for value in request.POST.getlist("uuids")]
        if None in uuids:
            messages.error(request, "uuids: the selection holds something that is not a VM uuid")
            return redirect(back)
        selected = VM.objects.filter(uuid__in=uuids)
    try:
        task = bulk.request_bulk(actor(request), request.POST.get("action", ""), selected)
    except ServiceError as error:
        return refuse(request, error, back)
    return task_started(request, task, reverse("task-detail", args=[task.uuid]))


@role_required()
def vm_detail(request, uuid):
    vm = get_object_or_404(VM.objects.select_related("host", "cluster", "parent", "source_image"), uuid=uuid)
    return render(request, "console/vm_detail.html", {
        "vm": vm,
        "disks": vm.disks.select_related("container"),
        "nics": vm.nics.select_related("network"),
        "cdroms": vm.cdroms.select_related("image"),
        "isos": Image.objects.filter(kind=Image.Kind.ISO),
        "tasks": Task.objects.filter(entity_uuid=vm.uuid).select_related("created_by")[:10],
        "events": AuditEvent.objects.filter(entity_uuid=vm.uuid)[:10],
        "power_actions": [a for a, (states, _) in POWER_TRANSITIONS.items() if vm.power_state in states]
        + [name for name, action in registry.power_actions.items() if action.offered(vm)],
        "destructive": destructive_actions(),
        "panels": registry.vm_panels.ordered(),
    })


@require_POST
@role_required(OPERATOR)
def vm_power(request, uuid):
    vm = get_object_or_404(VM.objects.select_related("host"), uuid=uuid)
    back = request.POST.get("next") or reverse("vm-detail", args=[uuid])
    try:
        task = power.request_power(actor(request), vm, request.POST.get("action", ""))
    except ServiceError as error:
        return refuse(request, error, back)
    return task_started(request, task, back)


@role_required(OPERATOR)
def vm_delete(request, uuid):
    vm = get_object_or_404(VM.objects.select_related("host"), uuid=uuid)
    if request.method != "POST":
        return render(request, "console/confirm.html", {
            "title": f"Delete {vm.name}?", "action": reverse("vm-delete", args=[uuid]), "button": "Delete VM",
            "text": "The VM is powered off, and its disks are deleted. This cannot be undone.",
            "back": reverse("vm-detail", args=[uuid])})
    try:
        task = vms.request_delete(actor(request), vm)
    except ServiceError as error:
        return refuse(request, error, reverse("vm-detail", args=[uuid]))
    return task_started(request, task, reverse("vm-list"))


@role_required(OPERATOR)
def vm_create(request):
    form = with_options(VMCreateForm)(request.POST or None)
    disks = DiskFormSet(request.POST or None, prefix="disks")
    nics = NicFormSet(request.POST or None, prefix="nics")
    label_rows(disks, nics)
    if request.method == "POST" and form.is_valid() and disks.is_valid() and nics.is_valid():
        try:
            task = vms.request_create_vm(actor(request), vm_spec(form, disks, nics))
        except ServiceError as error:
            show_service_error(error, form, disks, nics)
        else:
            return task_started(request, task, reverse("vm-detail", args=[task.entity_uuid]))
    status = 400 if request.method == "POST" else 200
    return render(request, "console/vm_form.html", {"form": form, "disks": disks, "nics": nics,
                                                    "option_templates": option_templates()}, status=status)


def label_rows(disks, nics) -> None:
    """Name each formset row's fields, so that labels (and screen readers) tell the rows apart."""
    for number, form in enumerate(disks, start=1):
        form.fields["size_gib"].label = f"Disk {number} size (GiB)"
    for number, form in enumerate(nics, start=1):
        for name, label in (("network", "network"), ("ip_mode", "IP"), ("address", "static address")):
            form.fields[name].label = f"NIC {number} {label}"


@role_required(OPERATOR)
def vm_clone(request, uuid):
    source = get_object_or_404(VM.objects.select_related("host", "cluster"), uuid=uuid)
    chosen = as_uuid(request.POST.get("snapshot") or request.GET.get("snapshot") or "")
    snapshot = get_object_or_404(Snapshot, vm=source, uuid=chosen) if chosen else None
    form = with_options(CloneForm)(request.POST or None, initial={"name": f"{source.name}-clone"})
    if request.method == "POST" and form.is_valid():
        try:
            task = vms.request_clone(actor(request), source, form.cleaned_data["name"], snapshot=snapshot,
                                     **clone_options(form))
        except ServiceError as error:
            show_service_error(error, form)
        else:
            return task_started(request, task, reverse("vm-detail", args=[task.entity_uuid]))
    status = 400 if request.method == "POST" else 200
    return render(request, "console/clone_form.html", {"form": form, "source": source, "snapshot": snapshot,
                                                       "option_templates": option_templates()}, status=status)


@require_POST
@role_required(OPERATOR)
def vm_insert_iso(request, uuid):
    vm = get_object_or_404(VM.objects.select_related("host"), uuid=uuid)
    back = reverse("vm-detail", args=[uuid])
    image = Image.objects.filter(uuid=as_uuid(request.POST.get("image")), kind=Image.Kind.ISO).first()
    if image is None:
        messages.error(request, "image: choose an ISO image")
        return redirect(back)
    slot = request.POST.get("slot")
    try:
        task = cdroms.request_insert(actor(request), vm, image, int(slot) if slot and slot.isdigit() else None)
    except ServiceError as error:
        return refuse(request, error, back)
    return task_started(request, task, back)


@require_POST
@role_required(OPERATOR)
def vm_eject_iso(request, uuid):
    vm = get_object_or_404(VM.objects.select_related("host"), uuid=uuid)
    back = reverse("vm-detail", args=[uuid])
    slot = request.POST.get("slot", "")
    try:
        task = cdroms.request_eject(actor(request), vm, int(slot) if slot.isdigit() else -1)
    except ServiceError as error:
        return refuse(request, error, back)
    return task_started(request, task, back)
