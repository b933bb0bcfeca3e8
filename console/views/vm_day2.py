"""VM pages for day-2 changes: the edit form, disk and NIC rows added, grown, moved and removed."""

from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR
from console.core.errors import InvalidRequest, ServiceError
from console.core.views import actor, as_uuid, refuse, role_required, task_started

from ..forms.vm_edit import FIELD_OF_KEY, GiB, VMEditForm
from ..models import VM, Image, Network
from ..services import vm_devices, vm_edit


@role_required(OPERATOR)
def vm_edit_page(request, uuid):
    vm = get_object_or_404(VM.objects.select_related("host", "cluster"), uuid=uuid)
    initial = {"name": vm.name, "description": vm.description, "vcpus": vm_edit.shown(vm, "vcpus"),
               "memory_gib": vm_edit.shown(vm, "memory_bytes") / GiB, "boot_order": vm.boot_order,
               "high_availability": vm.high_availability, "version": vm.version}
    form = VMEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            changes = form.changes()
            if vm.is_template:  # a template never runs: its form has no high-availability box to read
                del changes["high_availability"]
            task = vm_edit.request_update(actor(request), vm, changes, form.cleaned_data["version"])
        except ServiceError as error:
            for key, problems in error.errors.items():
                field = FIELD_OF_KEY.get(key, key)
                for problem in problems:
                    form.add_error(field if field in form.fields and field != "version" else None, problem)
        else:
            return task_started(request, task, reverse("vm-detail", args=[uuid]))
    status = 400 if request.method == "POST" else 200
    return render(request, "console/vm_edit.html", {"form": form, "vm": vm}, status=status)


def _size(request, name: str = "size_gib") -> int | None:
    text = request.POST.get(name, "").strip()
    if not text:
        return None
    try:
        return int(float(text) * GiB)
    except ValueError:
        raise InvalidRequest({"size_bytes": [f"{text!r} is not a size in GiB"]}) from None


@require_POST
@role_required(OPERATOR)
def vm_disk(request, uuid, operation):
    """add (size, or an image to copy or link), grow, detach or delete."""
    if operation not in ("add", "grow", "detach", "delete"):
        raise Http404(f"no disk operation {operation}")
    vm = get_object_or_404(VM.objects.select_related("host", "cluster"), uuid=uuid)
    back = reverse("vm-detail", args=[uuid])
    try:
        if operation == "add":
            image = Image.objects.filter(uuid=as_uuid(request.POST.get("image")), kind=Image.Kind.DISK).first()
            task = vm_devices.request_add_disk(actor(request), vm, size_bytes=_size(request), image=image,
                                               linked=request.POST.get("linked") == "on")
        else:
            index = request.POST.get("index", "")
            disk = vm.disks.select_related("storage_container", "vm").filter(
                index=int(index) if index.isdigit() else -1).first()
            if disk is None:
                raise InvalidRequest({"disk": [f"VM {vm.name} has no disk {index}"]})
            if operation == "grow":
                task = vm_devices.request_grow_disk(actor(request), vm, disk, _size(request) or 0)
            else:
                task = vm_devices.request_remove_disk(actor(request), vm, disk, keep=operation == "detach")
    except ServiceError as error:
        return refuse(request, error, back, labels={"size_bytes": "Size"})
    return task_started(request, task, back)


@require_POST
@role_required(OPERATOR)
def vm_nic(request, uuid, operation):
    """add, move (to another network) or remove."""
    if operation not in ("add", "move", "remove"):
        raise Http404(f"no NIC operation {operation}")
    vm = get_object_or_404(VM.objects.select_related("host", "cluster"), uuid=uuid)
    back = reverse("vm-detail", args=[uuid])
    network = Network.objects.filter(uuid=as_uuid(request.POST.get("network"))).first()
    ip = "auto" if request.POST.get("ip_mode") == "auto" else None
    try:
        if operation in ("add", "move") and network is None:
            raise InvalidRequest({"network": ["choose a network"]})
        if operation == "add":
            task = vm_devices.request_add_nic(actor(request), vm, network, ip=ip)
        else:
            index = request.POST.get("index", "")
            nic = vm.nics.select_related("network", "vm").filter(index=int(index) if index.isdigit() else -1).first()
            if nic is None:
                raise InvalidRequest({"nic": [f"VM {vm.name} has no NIC {index}"]})
            if operation == "move":
                task = vm_devices.request_set_nic_network(actor(request), vm, nic, network, ip=ip)
            else:
                task = vm_devices.request_remove_nic(actor(request), vm, nic)
    except ServiceError as error:
        return refuse(request, error, back)
    return task_started(request, task, back)
