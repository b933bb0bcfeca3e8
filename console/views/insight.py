"""Looking into a VM: its Console tab (screen and serial console in the browser), the tickets the tab opens
its websockets with, and the Performance panel of the VM page."""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR, has_role
from console.core.errors import ServiceError
from console.core.views import actor, role_required

from ..consoles.tickets import issue_ticket
from ..models import VM
from ..services import metrics
from .charts import vm_charts


@role_required()
def vm_console(request, uuid):
    vm = get_object_or_404(VM.objects.select_related("host"), uuid=uuid)
    return render(request, "console/vm_console.html", {
        "vm": vm, "may_open": has_role(request.user, OPERATOR),
        "vnc_offered": vm.host is not None and not vm.host.driver_uri.startswith("sim:"),
    })


@require_POST
@role_required()
def vm_console_ticket(request, uuid):
    """A single-use ticket for one console of the VM, as the websocket URL to open within the ticket's life."""
    vm = get_object_or_404(VM.objects.select_related("host"), uuid=uuid)
    kind = request.POST.get("kind", "")
    try:
        _, ticket = issue_ticket(actor(request), vm, kind)
    except ServiceError as error:
        return JsonResponse({"detail": str(error).removeprefix("detail: "), "errors": error.errors},
                            status=error.status_code)
    base = settings.FACET_WEBSOCKET_URL or f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
    return JsonResponse({"url": f"{base}/ws/vms/{vm.uuid}/console/{kind}/?ticket={ticket}",
                         "expires_in": settings.FACET_CONSOLE_TICKET_SECONDS})


@role_required()
def vm_performance(request, uuid):
    vm = get_object_or_404(VM, uuid=uuid)
    period = request.GET.get("period", "hour")
    if period not in metrics.PERIODS:
        period = "hour"
    return render(request, "console/partials/performance_panel.html", {
        "vm": vm, "period": period, "periods": list(metrics.PERIODS),
        "charts": vm_charts(metrics.period_series(vm.uuid, period)),
        "refresh": metrics.PERIODS[period][1] if period == "hour" else None,
    })
