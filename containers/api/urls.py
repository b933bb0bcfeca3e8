"""REST endpoints of this app (included under /api/v1/ by console/api/urls.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import plugin, views

router = SimpleRouter()
router.register("volume-groups", views.VolumeGroupViewSet)
router.register("docker-hosts", views.DockerHostViewSet)

VOLUME = "docker-host/volumes/<str:name>/"

urlpatterns = [
    path("docker-host/", plugin.SelfView.as_view(), name="plugin-self"),
    path("docker-host/hello/", plugin.HelloView.as_view(), name="plugin-hello"),
    path("docker-host/volumes/", plugin.VolumeListView.as_view(), name="plugin-volumes"),
    path("docker-host/usage/", plugin.UsageView.as_view(), name="plugin-usage"),
    path(VOLUME, plugin.VolumeView.as_view(), name="plugin-volume"),
    path(VOLUME + "attach/", plugin.AttachView.as_view(), name="plugin-attach"),
    path(VOLUME + "detach/", plugin.DetachView.as_view(), name="plugin-detach"),
    path("docker-host/tasks/<uuid:uuid>/", plugin.TaskView.as_view(), name="plugin-task"),
    path("docker-host/plugin.deb", plugin.PackageView.as_view(), name="plugin-package"),
    *router.urls,
]
