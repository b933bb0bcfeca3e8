"""Images, networks, storage containers."""

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Sum
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.core import audit
from console.core.access import ADMIN, OPERATOR
from console.core.errors import ServiceError
from console.core.views import actor, as_uuid, field_label, refuse, role_required, task_started

from ..forms.inventory import NetworkForm
from ..models import Image, Network, StorageContainer
from ..services import image_import, images
from ..services.vms import default_cluster


@role_required()
def image_list(request):
    return render(request, "console/image_list.html", {
        "images": Image.objects.select_related("storage_container", "created_by"),
        "storage_containers": StorageContainer.objects.all(),
        "upload_limit": settings.FACET_IMAGE_UPLOAD_LIMIT,
    })


@role_required(OPERATOR)
def image_upload_check(request):
    """What the upload form asks before it sends a file: would the console take it (name free, size within
    the limit and the storage container's free space, not empty)? The same checks run again on the upload itself."""
    storage_container = StorageContainer.objects.filter(uuid=as_uuid(request.GET.get("container"))).first()
    size = request.GET.get("size", "")
    try:
        images.check_upload(default_cluster(), request.GET.get("name", ""), request.GET.get("kind", ""),
                            storage_container,
                            int(size) if size.isdigit() else None)
    except ServiceError as error:
        problems = [f"{field_label(field)}: {problem}" if field != "detail" else problem
                    for field, field_problems in error.errors.items() for problem in field_problems]
        return JsonResponse({"ok": False, "problems": problems}, status=error.status_code)
    return JsonResponse({"ok": True})


@require_POST
@role_required(OPERATOR)
def image_delete(request, uuid):
    image = get_object_or_404(Image.objects.select_related("storage_container"), uuid=uuid)
    try:
        images.delete_image(actor(request), image)
    except ServiceError as error:
        return refuse(request, error, reverse("image-list"))
    messages.success(request, f"Image {image.name} deleted")
    return redirect("image-list")


@require_POST
@role_required(OPERATOR)
def image_import_url(request):
    try:
        task = image_import.request_import(actor(request), request.POST.get("url", "").strip(),
                                           name=request.POST.get("name", "").strip(),
                                           sha256=request.POST.get("sha256", "").strip())
    except ServiceError as error:
        return refuse(request, error, reverse("image-list"), labels={"url": "URL", "sha256": "SHA-256"})
    return task_started(request, task, reverse("image-list"))


@role_required()
def network_list(request):
    form = NetworkForm()
    return render(request, "console/network_list.html", {
        "networks": Network.objects.annotate(nic_count=Count("nics")), "form": form})


@role_required(ADMIN)
def network_create(request):
    form = NetworkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            form.instance.cluster = default_cluster()
        except ServiceError as error:
            return refuse(request, error, reverse("network-list"))
        network = form.save()
        audit.record(actor(request), "network.create", network)
        messages.success(request, f"Network {network.name} created")
        return redirect("network-list")
    status = 400 if request.method == "POST" else 200
    return render(request, "console/network_form.html", {"form": form}, status=status)


@role_required()
def storage_list(request):
    storage_containers = StorageContainer.objects.annotate(provisioned=Sum("disks__size_bytes"),
                                                           disk_count=Count("disks"))
    return render(request, "console/storage_list.html", {"storage_containers": storage_containers})
