"""Celery's autodiscovery imports this module in workers: it registers this app's task kinds (the console's
`facet.task.run` runs them)."""

from .services import attachments, volume_groups  # noqa: F401
