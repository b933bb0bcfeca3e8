"""The hosts: list, a host's page (capacity, VMs, driver, heartbeats, maintenance, unmanaged domains), entering
and leaving maintenance, adopting a domain."""

from django.contrib import messages
from django.db.models import Count, Q, Sum
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.core.access import ADMIN, OPERATOR
from console.core.drivers import DriverError
from console.core.errors import ServiceError
from console.core.views import actor, refuse, role_required, task_started

from ..models import VM, Host
from ..services import adopt, hosts


@role_required()
def host_list(request):
    running = Q(vms__power_state__in=[VM.PowerState.ON, VM.PowerState.PAUSED])
    return render(request, "console/host_list.html", {"hosts": Host.objects.annotate(
        vm_count=Count("vms"), memory_used=Sum("vms__memory_bytes", filter=running))})


@role_required()
def host_detail(request, uuid):
    host = get_object_or_404(Host.objects.select_related("cluster"), uuid=uuid)
    vms = host.vms.order_by("name")
    running = vms.filter(power_state__in=[VM.PowerState.ON, VM.PowerState.PAUSED])
    used = running.aggregate(memory=Sum("memory_bytes"), vcpus=Sum("vcpus"))
    return render(request, "console/host_detail.html", {
        "host": host, "vms": vms[:200], "vm_count": vms.count(), "memory_used": used["memory"] or 0,
        "vcpus_used": used["vcpus"] or 0, "show_unmanaged": "unmanaged" in request.GET})


@role_required()
def host_unmanaged(request, uuid):
    """The host page's "Unmanaged domains" section, loaded when it is opened: it reads the hypervisor."""
    host = get_object_or_404(Host.objects.select_related("cluster"), uuid=uuid)
    try:
        domains, problem = adopt.unmanaged(host), ""
    except (DriverError, ServiceError) as error:
        domains, problem = [], str(error)
    for domain in domains:
        domain["state_label"] = VM.PowerState(domain["state"]).label if domain["state"] in VM.PowerState.values \
            else domain["state"]
    return render(request, "console/partials/host_unmanaged.html",
                  {"host": host, "domains": domains, "problem": problem})


@require_POST
@role_required(OPERATOR)
def host_adopt(request, uuid):
    host = get_object_or_404(Host, uuid=uuid)
    back = reverse("host-detail", args=[host.uuid]) + "?unmanaged=1#unmanaged"
    try:
        task = adopt.request_adopt(actor(request), host, request.POST.get("uuid", ""),
                                   request.POST.get("name", "").strip())
    except ServiceError as error:
        return refuse(request, error, back, labels={"uuid": "Domain"})
    except DriverError as error:  # the hypervisor did not answer the listing the adopt checks against
        messages.error(request, str(error))
        return redirect(back)
    return task_started(request, task, back)


@require_POST
@role_required(ADMIN)
def host_maintenance(request, uuid):
    host = get_object_or_404(Host, uuid=uuid)
    try:
        if request.POST.get("leave"):
            hosts.leave_maintenance(actor(request), host)
            messages.success(request, f"Host {host.name} takes VMs again")
        else:
            task = hosts.request_enter_maintenance(actor(request), host)
            messages.success(request, f"Host {host.name} is in maintenance; its VMs are moving away")
            return redirect("task-detail", uuid=task.uuid)
    except ServiceError as error:
        return refuse(request, error, reverse("host-detail", args=[host.uuid]))
    return redirect("host-detail", uuid=host.uuid)
