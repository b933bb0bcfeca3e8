from django.apps import AppConfig


class ContainersConfig(AppConfig):
    name = "containers"
    verbose_name = "Container services"

    def ready(self) -> None:
        from console.core.registry import NavItem, Panel, registry

        from .services import attachments, volume_groups  # noqa: F401  (their task kinds)

        registry.vm_panels.add("volume-groups", Panel("Volume Groups", "volume-groups-panel", order=30))
        registry.navigation.add("volume-groups", NavItem("Volume Groups", "volume-groups", "layers", order=40))
        registry.navigation.add("docker-hosts", NavItem("Docker Hosts", "docker-hosts", "box", order=50))
        registry.urls.add(self.name, "containers.urls")
        registry.api_urls.add(self.name, "containers.api.urls")
