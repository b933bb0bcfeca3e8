"""Guest Tools REST endpoints: thin views over ngt.services."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from console.api.serializers import TaskSerializer
from console.api.views import accepted, valid
from console.core.actors import Actor
from console.models import VM
from console.services.vms import default_cluster
from ngt.services import authority, guest_tools

from ..daemon.commands import leader_location
from ..models import GuestTools
from . import serializers as s


def vm_or_404(uuid) -> VM:
    return get_object_or_404(VM.objects.select_related("host", "cluster"), uuid=uuid)


class GuestToolsList(generics.ListAPIView):
    """VMs that have Guest Tools state, with it."""

    queryset = GuestTools.objects.select_related("vm", "certificate")
    serializer_class = s.GuestToolsSerializer
    filterset_fields = ["enabled", "iso_mounted", "link_active"]
    ordering_fields = ["vm__name", "last_seen"]
    ordering = ["vm__name"]


class GuestToolsDetail(APIView):
    """A VM's Guest Tools state; PATCH changes its capabilities (delivered by the next mount)."""

    serializer_class = s.GuestToolsSerializer

    def get(self, request, uuid):
        return Response(s.GuestToolsSerializer(guest_tools.state_of(vm_or_404(uuid))).data)

    @extend_schema(request=s.CapabilitiesSerializer, responses={200: s.GuestToolsSerializer})
    def patch(self, request, uuid):
        data = valid(s.CapabilitiesSerializer, request)
        state = guest_tools.set_capabilities(Actor.from_request(request), vm_or_404(uuid), data["capabilities"])
        return Response(s.GuestToolsSerializer(guest_tools.state_of(state.vm)).data)


class GuestToolsOperation(APIView):
    """POST starts the `operation` (a request function of ngt.services) and answers 202 with its task."""

    serializer_class = TaskSerializer
    operation = None

    @extend_schema(request=None, responses={202: TaskSerializer})
    def post(self, request, uuid):
        return accepted(type(self).operation(Actor.from_request(request), vm_or_404(uuid)))


class Enable(GuestToolsOperation):
    operation = staticmethod(guest_tools.request_enable)


class Unmount(GuestToolsOperation):
    operation = staticmethod(guest_tools.request_unmount)


class Disable(GuestToolsOperation):
    operation = staticmethod(guest_tools.request_disable)


class Mount(APIView):
    serializer_class = TaskSerializer

    @extend_schema(request=s.MountSerializer, responses={202: TaskSerializer})
    def post(self, request, uuid):
        data = valid(s.MountSerializer, request)
        return accepted(guest_tools.request_mount(Actor.from_request(request), vm_or_404(uuid), data["config_only"]))


class CertificateAuthorityDetail(APIView):
    """The cluster's Guest Tools CA certificate (made on first use). Its key never leaves the console."""

    serializer_class = s.CertificateAuthoritySerializer

    def get(self, request):
        return Response(s.CertificateAuthoritySerializer(authority.authority_for(default_cluster())).data)


class LeaderLocation(APIView):
    """Where the Guest Tools Service leader runs: `{"host", "address"}`, or 503 while no instance leads."""

    @extend_schema(responses={200: {"type": "object"}, 503: {"type": "object"}})
    def get(self, request):
        location = leader_location()
        if location is None:
            return Response({"detail": ["no Guest Tools Service instance holds the leader lease"]}, status=503)
        return Response(location)
