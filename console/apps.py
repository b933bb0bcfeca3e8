from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The Django project's own app: the kernel (`console.core`) and the VM inventory."""

    name = "console"
    verbose_name = "Facet inventory"

    def ready(self) -> None:
        # Facet's Celery app, made the current one in every Django process (web, workers, commands): the kernel
        # sends tasks through `celery.current_app`, which in a web process was Celery's default (AMQP on
        # localhost), so every task waited for the reaper. The `facet` CLI loads no Django, hence no Celery.
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
