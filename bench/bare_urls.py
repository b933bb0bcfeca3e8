"""The console's URLs plus `/bench/bare/vms/`: a bare DRF `ListAPIView` over the same VM table, the
yardstick `bench/api_list.py` measures `GET /api/v1/vms/` against.

The bare view returns `VMSerializer`'s JSON (nested host, NICs, disks, CD-ROMs, fetched with
select_related/prefetch_related) through the serializer itself: the ordinary DRF way, which the real list
left for plain rows (`console/api/vm_list.py`). It paginates 100 per page and has token authentication
only: no filter, search or ordering backends, no role check, no browsable API. It ignores the filter
parameters the benchmark sends, so it always lists VMs in the model's order."""

from django.db.models import Prefetch
from django.urls import path
from rest_framework import generics
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer

from console.api.serializers import VMSerializer
from console.core.api.authentication import ApiTokenAuthentication
from console.models import VM, Nic
from console.urls import urlpatterns as console_urlpatterns


class BarePagination(PageNumberPagination):
    page_size = 100


class BareVMList(generics.ListAPIView):
    queryset = VM.objects.select_related("cluster", "host", "parent").prefetch_related(
        Prefetch("nics", queryset=Nic.objects.select_related("network")),
        "disks__storage_container", "cdroms__image")
    serializer_class = VMSerializer
    pagination_class = BarePagination
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]
    filter_backends: list = []
    renderer_classes = [JSONRenderer]


urlpatterns = [path("bench/bare/vms/", BareVMList.as_view(), name="bench-bare-vms"), *console_urlpatterns]
