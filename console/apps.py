from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The Django project's own app: the kernel (`console.core`) and the VM inventory."""

    name = "console"
    verbose_name = "Facet inventory"

    def ready(self) -> None:
        # Every Django process sends tasks through Celery's current app: the web and ASGI tiers, the Guest Tools
        # Service (a customization result queues the media's removal), management commands. Without the facet
        # app loaded that is Celery's default (amqp://localhost): every send fails, and the task waits for the
        # reaper to send it again 30 s later (or for ever where no beat runs).
        from . import celery  # noqa: F401
        from .core.registry import NavItem, Panel, VMHooks, registry
        from .services import (  # noqa: F401  (their task kinds)
            adopt,
            bulk,
            bulk_clone,
            cdroms,
            hosts,
            image_import,
            images,
            metrics,
            power,
            snapshots,
            templates,
            vm_devices,
            vm_edit,
            vms,
        )

        registry.vm_hooks.add(self.name, VMHooks(powered=vm_edit.apply_pending))

        bulk.register_bulk_actions()
        registry.vm_panels.add("performance", Panel("Performance", "vm-performance", order=5))
        registry.vm_panels.add("snapshots", Panel("Snapshots", "snapshot-panel", order=30))
        for order, (label, url_name, icon) in enumerate([
            ("Dashboard", "dashboard", "grid"), ("VMs", "vm-list", "server"), ("Templates", "template-list", "copy"),
            ("Images", "image-list", "disc"), ("Networks", "network-list", "network"),
            ("Storage", "storage-list", "database"), ("Hosts", "host-list", "server")]):
            registry.navigation.add(url_name, NavItem(label, url_name, icon, order=10 + order))
        for order, (label, url_name, icon) in enumerate([
            ("Tasks", "task-list", "activity"), ("Audit", "audit-list", "list"), ("Settings", "settings", "settings")]):
            registry.navigation.add(url_name, NavItem(label, url_name, icon, order=90 + order))
