from django.urls import reverse

from console.core.access import ADMIN, OPERATOR, has_role, role_of
from console.core.models import Task
from console.core.registry import registry

from .models import Cluster


def shell(request) -> dict:
    """What every page of the console shows around its content: navigation, cluster, user, role."""
    if not request.user.is_authenticated:
        return {}
    path = request.path
    nav = []
    for item in registry.navigation.ordered():
        url = reverse(item.url_name)
        active = path == url if url == "/" else path.startswith(url)
        nav.append({"label": item.label, "url": url, "icon": item.icon, "active": active})
    return {
        "nav": nav,
        "cluster": Cluster.objects.only("name").order_by("id").first(),
        "role": role_of(request.user),
        "can_operate": has_role(request.user, OPERATOR),
        "is_admin": has_role(request.user, ADMIN),
        "running_tasks": Task.objects.filter(status__in=[Task.Status.QUEUED, Task.Status.RUNNING],
                                             parent__isnull=True).count(),
    }
