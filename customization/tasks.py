"""Celery finds this module; the work of customization tasks runs through `facet.task.run` like every
Facet task, so importing the services registers their kinds (`vm.customization.remove`)."""

from .services import lifecycle  # noqa: F401  (registers the task kinds)
