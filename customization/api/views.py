"""REST endpoints: the script library, validation, and a VM's customization status."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from console.api.views import ByUuid, StreamedBody, valid
from console.core.access import OPERATOR, VIEWER, has_role
from console.core.actors import Actor
from console.core.errors import InvalidRequest, TooLarge
from console.models import VM

from ..models import CustomizationScript, Kind, VMCustomization
from ..services import library, sources, sysprep
from ..services.content import size_limit
from ..services.validation import validate
from . import serializers as s

# JSON escapes may make a script up to six times longer (\u00XX); anything past this is refused unread.
JSON_OVERHEAD = 6


def refuse_large_body(request) -> None:
    length = request.META.get("CONTENT_LENGTH") or "0"
    limit = JSON_OVERHEAD * size_limit() + 4096
    if length.isdigit() and int(length) > limit:
        raise TooLarge({"content": [f"a request of {int(length)} bytes is over the limit of {limit} bytes"]})


class ScriptViewSet(ByUuid, viewsets.ModelViewSet):
    """Saved cloud-init and Sysprep scripts. Viewers see names and metadata; Operators see content."""

    queryset = CustomizationScript.objects.select_related("owner")
    filterset_fields = ["kind", "name"]  # ?name= lets the CLI find a script by its name
    ordering_fields = ["name", "kind", "usage_count", "created_at"]

    @property
    def write_role(self) -> str:
        return VIEWER if self.action in ("check", "generate_sysprep") else OPERATOR

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action != "upload":
            refuse_large_body(request)

    def get_serializer_class(self):
        if has_role(self.request.user, OPERATOR):
            return s.ScriptSerializer
        return s.ScriptMetadataSerializer

    def perform_create(self, serializer):
        serializer.instance = library.save_script(Actor.from_request(self.request), **self._fields(serializer))

    def perform_update(self, serializer):
        serializer.instance = library.save_script(Actor.from_request(self.request), script=serializer.instance,
                                                  **self._fields(serializer))

    def _fields(self, serializer) -> dict:
        data, current = serializer.validated_data, serializer.instance
        defaults = {"kind": Kind.CLOUD_INIT, "description": "", "name": "", "content": ""}
        return {name: data.get(name, getattr(current, name) if current else default)
                for name, default in defaults.items()}

    def perform_destroy(self, instance):
        library.delete_script(Actor.from_request(self.request), instance)

    @extend_schema(request=s.ValidateSerializer, responses={200: s.ValidationResultSerializer})
    @action(detail=False, methods=["post"], url_path="validate")
    def check(self, request):
        """Detect a script's format and list its problems, each with line, column and severity."""
        data = valid(s.ValidateSerializer, request)
        return Response(validate(data["kind"], data["content"]).as_dict())

    @extend_schema(request=s.SysprepAnswersSerializer, responses={200: {"type": "object"}})
    @action(detail=False, methods=["post"], url_path="generate-sysprep")
    def generate_sysprep(self, request):
        """The guided mode: an unattend.xml from a few answers (`{"content": ...}`; nothing is stored)."""
        answers = sysprep.Answers(**valid(s.SysprepAnswersSerializer, request))
        return Response({"content": sysprep.generate(answers)})

    @extend_schema(request={"application/octet-stream": {"type": "string", "format": "binary"}},
                   responses={201: s.ScriptSerializer})
    @action(detail=False, methods=["post"], parser_classes=[StreamedBody])
    def upload(self, request):
        """Save a file as a script, sent as the raw body: `?name=NAME&kind=cloud-init|sysprep[&description=]`.
        A body over the size limit is refused from its Content-Length, before it is read."""
        length = request.META.get("CONTENT_LENGTH") or ""
        if not length.isdigit():
            raise InvalidRequest({"file": ["send the script with a Content-Length header"]})
        content = sources.read_bounded(request._request, "file", int(length))
        params = request.query_params
        script = library.save_script(Actor.from_request(request), name=params.get("name", ""),
                                     kind=params.get("kind", "cloud-init"), content=content,
                                     description=params.get("description", ""))
        return Response(s.ScriptSerializer(script).data, status=status.HTTP_201_CREATED)


class VMCustomizationView(APIView):
    """A VM's customization: status, the guest's message, the media's files."""

    @extend_schema(responses={200: s.VMCustomizationSerializer})
    def get(self, request, uuid):
        vm = get_object_or_404(VM, uuid=uuid)
        customization = VMCustomization.objects.select_related("vm", "script").filter(vm=vm).first()
        if customization is None:
            raise NotFound(f"VM {vm.name} was created without customization")
        context = {"may_read_secrets": has_role(request.user, OPERATOR)}
        return Response(s.VMCustomizationSerializer(customization, context=context).data)
