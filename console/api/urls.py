from django.urls import include, path
from rest_framework.routers import DefaultRouter

from console.core.registry import registry

from . import views

router = DefaultRouter()
router.register("clusters", views.ClusterViewSet)
router.register("hosts", views.HostViewSet)
router.register("storage-containers", views.StorageContainerViewSet)
router.register("images", views.ImageViewSet)
router.register("networks", views.NetworkViewSet)
router.register("vms", views.VMViewSet)
router.register("tasks", views.TaskViewSet)
router.register("audit", views.AuditEventViewSet)
router.register("tokens", views.TokenViewSet, basename="apitoken")
router.register("users", views.UserViewSet, basename="user")

urlpatterns = [
    path("auth/token/", views.ObtainToken.as_view(), name="obtain-token"),
    *(path("", include(module)) for module in registry.api_urls.values()),  # the other apps' APIs
    *router.urls,
]
