from django.urls import include, path
from rest_framework.routers import DefaultRouter

from console.core.api.lookups import UUID_PATTERN
from console.core.registry import registry

from . import snapshots, views

# Every basename starts with "api-": the HTML pages' URL names are "vm-list", "image-list"... and a route
# named like one of them made the API root link to the page instead of the API.
router = DefaultRouter()
router.register("clusters", views.ClusterViewSet, basename="api-cluster")
router.register("hosts", views.HostViewSet, basename="api-host")
router.register("storage-containers", views.StorageContainerViewSet, basename="api-storagecontainer")
router.register("images", views.ImageViewSet, basename="api-image")
router.register("networks", views.NetworkViewSet, basename="api-network")
router.register("vms", views.VMViewSet, basename="api-vm")
router.register("tasks", views.TaskViewSet, basename="api-task")
router.register("audit", views.AuditEventViewSet, basename="api-audit")
router.register("tokens", views.TokenViewSet, basename="api-token")
router.register("users", views.UserViewSet, basename="api-user")
router.register(rf"vms/(?P<uuid>{UUID_PATTERN})/snapshots", snapshots.SnapshotViewSet, basename="api-snapshot")

urlpatterns = [
    path("auth/token/", views.ObtainToken.as_view(), name="obtain-token"),
    *(path("", include(module)) for module in registry.api_urls.values()),  # the other apps' APIs
    *router.urls,
]
