"""Guest Tools pages: the panel on a VM's page (loaded by htmx, its forms plain POSTs that work without
JavaScript) and the Guest Tools page of the whole cluster."""

from datetime import timedelta

from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR
from console.core.errors import ServiceError
from console.core.models import Task
from console.core.views import actor, paginate, refuse, role_required, task_started
from console.models import VM
from ngt.services import guest_tools
from ngt.services.authority import CaUnavailable, open_authority

from .models import CAPABILITIES, CAPABILITY_LABELS, TOOLS_VERSION, CertificateAuthority, GuestTools, VMCertificate

CAPABILITY_HELP = {
    "self-service-restore": "Users inside the guest list this VM's snapshots and attach one read-only "
                            "(facet-guest-tools ssr list|attach|detach): it is mounted under "
                            "/mnt/facet-restore/SNAPSHOT/ to copy files back, and detached after an hour.",
    "vss-snapshot": "Snapshots of the running VM are application-consistent: the agent runs the guest's "
                    "pre-freeze hooks, freezes its writable filesystems while the disks are snapshotted, then thaws "
                    "and runs the post-thaw hooks (it thaws by itself after 30 s whatever happens).",
}
OPERATIONS = {
    "enable": guest_tools.request_enable,
    "mount": guest_tools.request_mount,
    "unmount": guest_tools.request_unmount,
    "disable": guest_tools.request_disable,
}
EXPIRY_WARNING = timedelta(days=30)


def _upgrade_available() -> Q:
    """Versions compare as numbers, which SQL does not do: the rows with a reported version are read here."""
    reported = GuestTools.objects.exclude(installed_version="").only("id", "installed_version")
    return Q(pk__in=[state.pk for state in reported if state.upgrade_available])


# The Guest Tools page's filters: each makes a condition on the state rows.
STATES = {
    "enabled": ("Enabled", lambda: Q(enabled=True)),
    "iso-mounted": ("ISO mounted", lambda: Q(iso_mounted=True)),
    "link-active": ("Link active", lambda: Q(link_active=True)),
    "upgrade-available": ("Upgrade available", _upgrade_available),
}


def _vm(uuid) -> VM:
    return get_object_or_404(VM.objects.select_related("host", "cluster"), uuid=uuid)


@role_required()
def guest_tools_panel(request, uuid):
    vm = _vm(uuid)
    state = guest_tools.state_of(vm)
    return render(request, "ngt/panel.html", {
        "vm": vm, "state": state,
        "capabilities": [(name, CAPABILITY_LABELS[name], name in state.capabilities, CAPABILITY_HELP[name])
                         for name in CAPABILITIES],
        "cdrom": vm.cdroms.filter(purpose=guest_tools.GUEST_TOOLS).exclude(iso_path="").first(),
        "busy": Task.objects.filter(entity_uuid=vm.uuid, kind__in=guest_tools.KINDS,
                                    status__in=guest_tools.ACTIVE).first(),
    })


@require_POST
@role_required(OPERATOR)
def guest_tools_operation(request, uuid, operation: str):
    if operation not in OPERATIONS:
        raise Http404(f"no Guest Tools operation {operation!r}")
    vm = _vm(uuid)
    back = reverse("vm-detail", args=[vm.uuid])
    options = {"config_only": request.POST.get("config_only") == "on"} if operation == "mount" else {}
    try:
        task = OPERATIONS[operation](actor(request), vm, **options)
    except ServiceError as error:
        return refuse(request, error, back)
    return task_started(request, task, back)


@require_POST
@role_required(OPERATOR)
def guest_tools_capabilities(request, uuid):
    vm = _vm(uuid)
    back = reverse("vm-detail", args=[vm.uuid])
    try:
        state = guest_tools.set_capabilities(actor(request), vm, request.POST.getlist("capabilities"))
    except ServiceError as error:
        return refuse(request, error, back)
    chosen = ", ".join(state.capabilities) or "none"
    messages.success(request, f"Guest Tools capabilities of {vm.name}: {chosen}. The next mount delivers them.")
    return redirect(back)


def _certificate_authority() -> tuple[CertificateAuthority | None, str]:
    """The first cluster's CA (none before the first Guest Tools task) and why its key does not open, if so."""
    authority = CertificateAuthority.objects.select_related("cluster").order_by("cluster_id").first()
    if authority is None:
        return None, ""
    try:
        open_authority(authority)
    except CaUnavailable as error:
        return authority, str(error).removeprefix("detail: ")
    return authority, ""


@role_required()
def guest_tools_page(request):
    """VMs by Guest Tools state, the CA, and the certificates that expire soon."""
    chosen = request.GET.get("state", "")
    states = GuestTools.objects.select_related("vm", "vm__host", "certificate")
    conditions = {key: condition() for key, (_, condition) in STATES.items()}
    counts = states.aggregate(**{key.replace("-", "_"): Count("id", filter=condition)
                                 for key, condition in conditions.items()})
    if chosen in STATES:
        states = states.filter(conditions[chosen])
    authority, ca_error = _certificate_authority()
    soon = timezone.now() + EXPIRY_WARNING
    return render(request, "ngt/guest_tools.html", {
        "page": paginate(request, states.order_by("vm__name", "id")),
        "filters": [(key, label, counts[key.replace("-", "_")]) for key, (label, _) in STATES.items()],
        "chosen": chosen, "query": f"state={chosen}" if chosen else "",
        "authority": authority, "ca_error": ca_error, "tools_version": TOOLS_VERSION,
        "expiring": VMCertificate.objects.filter(revoked=False, not_after__lt=soon).select_related("vm")
        .order_by("not_after")[:100],
    })
