from django.urls import reverse

from .models import Cluster, Task
from .services.access import ADMIN, OPERATOR, has_role, role_of

NAVIGATION = [
    # (label, url name, icon, role needed)
    ("Dashboard", "dashboard", "grid", None),
    ("VMs", "vm-list", "server", None),
    ("Templates", "template-list", "copy", None),
    ("Images", "image-list", "disc", None),
    ("Networks", "network-list", "network", None),
    ("Storage", "storage-list", "database", None),
    ("Volume Groups", "volume-groups", "layers", None),
    ("Docker Hosts", "docker-hosts", "box", None),
    ("Guest Tools", "guest-tools", "tool", None),
    ("Customization Scripts", "customization-scripts", "file", None),
    ("Tasks", "task-list", "activity", None),
    ("Audit", "audit-list", "list", None),
    ("Settings", "settings", "settings", None),
]


def shell(request) -> dict:
    """What every page of the console shows around its content: navigation, cluster, user, role."""
    if not request.user.is_authenticated:
        return {}
    path = request.path
    nav = []
    for label, name, icon, _ in NAVIGATION:
        url = reverse(name)
        active = path == url if url == "/" else path.startswith(url)
        nav.append({"label": label, "url": url, "icon": icon, "active": active})
    return {
        "nav": nav,
        "cluster": Cluster.objects.only("name").order_by("id").first(),
        "role": role_of(request.user),
        "can_operate": has_role(request.user, OPERATOR),
        "is_admin": has_role(request.user, ADMIN),
        "running_tasks": Task.objects.filter(status__in=[Task.Status.QUEUED, Task.Status.RUNNING],
                                             parent__isnull=True).count(),
    }
