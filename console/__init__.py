"""The Facet console. The Celery app lives in `console.celery` (found by `celery -A console`); it is
not imported here so that the `facet` CLI in `console.cli` starts without loading Celery."""
