import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
application = get_wsgi_application()

# The web tier sends tasks through Celery's current app: without this import that is Celery's default app
# (amqp://localhost), every send fails, and tasks wait for the reaper to send them 30 s later.
import console.celery  # noqa: E402, F401
