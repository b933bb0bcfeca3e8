from django.apps import AppConfig


class NgtConfig(AppConfig):
    name = "ngt"
    verbose_name = "Guest Tools"
