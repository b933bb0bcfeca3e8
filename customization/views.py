"""Console pages: the script library, live validation for the editors, the VM page's panel, and the
phone_home URL that guests call."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR, has_role
from console.core.actors import client_address
from console.core.body_limit import streams_body
from console.core.errors import ServiceError
from console.core.views import actor, role_required
from console.models import VM

from .forms import ScriptForm, SysprepForm, UploadForm
from .models import CustomizationScript, Kind, VMCustomization
from .services import library, lifecycle, sysprep
from .services.content import size_limit
from .services.validation import validate

MULTIPART_OVERHEAD = 16 * 1024  # the form's other fields and the part headers around the file


def _library(request, status: int = 200, upload_refusal: str = "", **forms):
    context = {
        "upload_refusal": upload_refusal,
        "scripts": CustomizationScript.objects.select_related("owner"),
        "script_form": forms.get("script_form") or ScriptForm(),
        "upload_form": forms.get("upload_form") or UploadForm(),
        "sysprep_form": forms.get("sysprep_form") or SysprepForm(),
        "limit": size_limit(),
    }
    return render(request, "customization/library.html", context, status=status)


@role_required()
def script_library(request):
    return _library(request)


def _saved(request, save, form_name: str, form) -> HttpResponse:
    """Run a save; on success go to the script, else show the library with the form's errors."""
    try:
        script = save()
    except ServiceError as error:
        for field, problems in error.errors.items():
            for problem in problems:
                form.add_error(field if field in form.fields else None, problem)
        return _library(request, status=400, **{form_name: form})
    messages.success(request, f"Script {script.name} saved")
    return redirect(script)


@require_POST
@role_required(OPERATOR)
def script_create(request):
    form = ScriptForm(request.POST)
    if not form.is_valid():
        return _library(request, status=400, script_form=form)
    data = form.cleaned_data
    return _saved(request, lambda: library.save_script(
        actor(request), name=data["name"], kind=data["kind"], content=data["content"],
        description=data["description"]), "script_form", form)


class BoundedUpload(FileUploadHandler):
    """Keeps an uploaded script in memory and stops reading the body once it passes the size limit."""

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.buffer = bytearray()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.buffer += raw_data
        if len(self.buffer) > size_limit():
            self.request.script_too_large = True
            raise StopUpload(connection_reset=True)

    def file_complete(self, file_size: int):
        return SimpleUploadedFile(self.file_name, bytes(self.buffer), self.content_type)


@streams_body  # bounded here, by the script size limit
@csrf_exempt
@require_POST
@role_required(OPERATOR)
def script_upload(request):
    """A file into the library. Too large a body is refused from its Content-Length, before it is read;
    a body without one is read only up to the limit (the CSRF check, which reads the form, comes after)."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > size_limit() + MULTIPART_OVERHEAD:
        return _too_large(request)
    request.upload_handlers = [BoundedUpload(request)]
    return _checked_upload(request)


@csrf_protect
def _checked_upload(request):
    form = UploadForm(request.POST, request.FILES)
    if getattr(request, "script_too_large", False):
        return _too_large(request)
    if not form.is_valid():
        return _library(request, status=400, upload_form=form)
    data = form.cleaned_data
    return _saved(request, lambda: library.save_script(
        actor(request), name=data["name"], kind=data["kind"], content=data["file"].read(),
        description=data["description"]), "upload_form", form)


def _too_large(request) -> HttpResponse:
    refusal = f"The file is over the limit of {size_limit() // 1024} KiB; nothing was read or kept."
    return _library(request, status=413, upload_refusal=refusal)


@require_POST
@role_required(OPERATOR)
def sysprep_generate(request):
    form = SysprepForm(request.POST)
    if not form.is_valid():
        return _library(request, status=400, sysprep_form=form)
    answers = form.answers()
    return _saved(request, lambda: library.save_script(
        actor(request), name=form.cleaned_data["name"], kind=Kind.SYSPREP, content=sysprep.generate(answers),
        description=f"Generated ({answers.install_type})"), "sysprep_form", form)


@role_required()
def script_detail(request, uuid):
    script = get_object_or_404(CustomizationScript.objects.select_related("owner"), uuid=uuid)
    can_read = has_role(request.user, OPERATOR)
    if request.method == "POST" and not can_read:
        raise PermissionDenied("Changing a script needs the Operator role.")
    form = ScriptForm(request.POST or None, instance=script) if can_read else None
    if request.method == "POST" and can_read and form.is_valid():
        data = form.cleaned_data
        script.refresh_from_db()  # the form wrote its values on the instance; the service decides
        try:
            library.save_script(actor(request), name=data["name"], kind=data["kind"], content=data["content"],
                                description=data["description"], script=script)
        except ServiceError as error:
            for field, problems in error.errors.items():
                form.add_error(field if field in form.fields else None, "; ".join(problems))
        else:
            messages.success(request, f"Script {script.name} saved")
            return redirect(script)
    return render(request, "customization/script_detail.html", {
        "script": script, "form": form, "can_read": can_read,
        "validation": validate(script.kind, script.content) if can_read else None,
    }, status=400 if form is not None and form.errors else 200)


@require_POST
@role_required(OPERATOR)
def script_delete(request, uuid):
    script = get_object_or_404(CustomizationScript, uuid=uuid)
    library.delete_script(actor(request), script)
    messages.success(request, f"Script {script.name} deleted")
    return redirect("customization-scripts")


@require_POST
@role_required()
def validate_live(request):
    """The editors' live result: the form posts its kind and script as the user types."""
    kind = request.POST.get("customization_kind") or request.POST.get("kind") or Kind.CLOUD_INIT
    content = request.POST.get("customization_content", request.POST.get("content", ""))
    result = validate(kind if kind in Kind.values else Kind.CLOUD_INIT, content) if content.strip() else None
    return render(request, "customization/validation_result.html", {"result": result})


@role_required()
def vm_panel(request, uuid):
    vm = get_object_or_404(VM, uuid=uuid)
    customization = VMCustomization.objects.select_related("script").filter(vm=vm).first()
    key_values = customization.key_values_for(has_role(request.user, OPERATOR)) if customization else {}
    return render(request, "customization/vm_panel.html",
                  {"vm": vm, "customization": customization, "key_values": key_values})


@csrf_exempt
@require_POST
def phone_home(request, token: str):
    """cloud-init's phone_home, from the guest: no session, the one-time token is the credential."""
    try:
        customization = lifecycle.phone_home(token, request.POST.dict(), client_address(request))
    except ServiceError as error:
        return JsonResponse(error.errors, status=404)
    return JsonResponse({"status": customization.status})

