"""VM pages: the list with filters and bulk actions, the detail page, create, clone, power, CD-ROMs."""

from dataclasses import dataclass

from django.contrib import messages
from django.db.models import Prefetch
from django.http import QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR
from console.core.errors import ServiceError
from console.core.models import AuditEvent, Task
from console.core.registry import registry
from console.core.views import (
    PAGE_SIZES,
    actor,
    as_uuid,
    confirm_then_start,
    paginate,
    query_without,
    refuse,
    role_required,
    task_started,
)

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
from ..models import VM, Image, Network, Nic, Snapshot
from ..services import bulk, cdroms, power, templates, vms


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


LIST_KEYS = ("ordering", "page", "page_size")  # of the list's query string, but not filters
SHOWN_NAMES = 10


@require_POST
@role_required(OPERATOR)
def vm_bulk(request):
    """Apply an action to the selected rows, or to every VM the list shows with its filter: of the list the
    form came from (VMs or templates), never more. A whole filter, or a delete of more than a few VMs, is
    first shown on a confirmation page (count, first names); a delete's count must be typed there."""
    templates = request.POST.get("list") == "templates"
    back = request.POST.get("next") or reverse("template-list" if templates else "vm-list")
    action = request.POST.get("action", "")
    scope = request.POST.get("scope")
    what = "template" if templates else "VM"
    if action not in dict(_bulk_menu(templates)):
        messages.error(request, f"action: {action!r} is not a bulk action of the {what} list")
        return redirect(back)
    listed = VM.objects.filter(is_template=templates)
    if scope == "all":
        query = QueryDict(request.POST.get("filter", ""), mutable=True)
        for key in LIST_KEYS:
            query.pop(key, None)
        try:
            selected = bulk.vms_matching(query, everything=True, among=listed)
        except ServiceError as error:
            return refuse(request, error, back)
    else:
        uuids = [as_uuid(value) for value in request.POST.getlist("uuids")]
        if None in uuids:
            messages.error(request, "The selection holds something that is not a VM; select the VMs again.")
            return redirect(back)
        selected = listed.filter(uuid__in=uuids)
    count = selected.count()
    if not count:
        messages.error(request, f"No {what} matches the selection; nothing was done.")
        return redirect(back)
    if (scope == "all" or bulk.needs_count(action, count)) and not request.POST.get("confirmed"):
        return _confirm_bulk(request, action, selected, count, templates, back)
    try:
        confirm_count = int(request.POST["confirm_count"]) if "confirm_count" in request.POST else None
    except ValueError:
        confirm_count = -1  # refused below as not the count
    try:
        task = bulk.request_bulk(actor(request), action, selected, confirm_count=confirm_count)
    except ServiceError as error:
        return refuse(request, error, back, labels={"confirm_count": "Count"})
    return task_started(request, task, reverse("task-detail", args=[task.uuid]))


def _confirm_bulk(request, action: str, selected, count: int, templates: bool, back: str):
    """The page that names what a bulk action reaches before it is done."""
    names = list(selected.order_by("name", "id").values_list("name", flat=True)[:SHOWN_NAMES])
    label = dict(_bulk_menu(templates))[action]
    noun = ("template" if templates else "VM") + ("" if count == 1 else "s")
    button = f"{label[:1].upper()}{label[1:]} {count} {noun}"
    return render(request, "console/vm_bulk_confirm.html", {
        "title": f"{button}?", "button": button, "action": action, "count": count, "names": names,
        "more": count - len(names), "noun": noun, "type_count": bulk.needs_count(action, count),
        "destructive": action in destructive_actions(), "back": back,
        "carried": [(key, value) for key in ("action", "scope", "filter", "list", "next", "uuids")
                    for value in request.POST.getlist(key)]})


@role_required()
def vm_detail(request, uuid):
    """The VM's page; its poll (`?live=1`, htmx) gets the same page without the messages, and tells the
    panels to reload while something is pending and once more after."""
    vm = get_object_or_404(VM.objects.select_related("host", "cluster", "parent", "source_image"), uuid=uuid)
    live = bool(request.htmx and request.GET.get("live"))
    pending = _pending(vm)
    response = render(request, "console/vm_detail_live.html" if live else "console/vm_detail.html", {
        "vm": vm,
        "disks": vm.disks.select_related("storage_container"),
        "nics": vm.nics.select_related("network"),
        "cdroms": vm.cdroms.select_related("image"),
        "isos": Image.objects.filter(kind=Image.Kind.ISO),
        "disk_images": Image.objects.filter(kind=Image.Kind.DISK, cluster=vm.cluster),
        "networks": Network.objects.filter(cluster=vm.cluster),
        "tasks": Task.objects.filter(entity_uuid=vm.uuid).select_related("created_by")[:10],
        "events": AuditEvent.objects.filter(entity_uuid=vm.uuid)[:10],
        "power_actions": power.offered_power_actions(vm),
        "destructive": destructive_actions(),
        "panels": registry.vm_panels.ordered(),
        "pending": pending,
    })
    if live and (pending or request.GET.get("was_pending")):
        response["HX-Trigger"] = "vm-refresh"
    return response


def _pending(vm: VM) -> bool:
    """Whether the VM's page is about to change by itself: a task on it runs, or an app waits for the guest."""
    return (vm.power_state in power.BUSY_STATES
            or Task.objects.filter(entity_uuid=vm.uuid).exclude(status__in=Task.ENDED).exists()
            or any(panel.pending(vm) for panel in registry.vm_panels.values() if panel.pending))


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
    return confirm_then_start(request, {
        "title": f"Delete {vm.name}?", "action": reverse("vm-delete", args=[uuid]), "button": "Delete VM",
        "text": "The VM is powered off, and its disks are deleted. This cannot be undone.",
    }, lambda: vms.request_delete(actor(request), vm), back=reverse("vm-detail", args=[uuid]),
        done=reverse("vm-list"))


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
        messages.error(request, "Choose an ISO image.")
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


@require_POST
@role_required(OPERATOR)
def vm_make_template(request, uuid):
    return _change_kind(request, uuid, templates.request_make_template)


@require_POST
@role_required(OPERATOR)
def vm_make_vm(request, uuid):
    return _change_kind(request, uuid, templates.request_make_vm)


def _change_kind(request, uuid, operation):
    vm = get_object_or_404(VM.objects.select_related("host"), uuid=uuid)
    back = reverse("vm-detail", args=[uuid])
    try:
        task = operation(actor(request), vm)
    except ServiceError as error:
        return refuse(request, error, back)
    return task_started(request, task, back)
