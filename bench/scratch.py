"""A throwaway Facet installation for one benchmark run: its own data directory and Redis socket path,
the embedded SQLite database, and Django set up on it. Call before importing anything of the console."""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def scratch_console(prefix: str, **environment: str) -> Path:
    """Set up Django on a new scratch directory (short: a unix socket path stops at 108 bytes)."""
    sys.path.insert(0, str(ROOT))
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update({
        "FACET_DATA_DIR": str(scratch / "data"),
        "FACET_REDIS_URL": f"unix://{scratch / 'redis.sock'}",
        "FACET_CA_KEY_FILE": str(scratch / "data" / "ca_key"),
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        **environment,
    })
    for name in ("FACET_DATABASE_URL", "FACET_SECRET_KEY"):
        os.environ.pop(name, None)
    import django

    django.setup()
    return scratch
