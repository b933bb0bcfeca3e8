"""Settings for the benchmark's gunicorn: the console's own, plus the bare comparison view."""

from console.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_urls"
