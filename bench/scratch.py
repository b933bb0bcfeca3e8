"""A throwaway Facet installation for one benchmark run: its own data directory and Redis socket path,
the embedded SQLite database, and Django set up on it. Call before importing anything of the console."""

import os
import platform
import shlex
import signal
import subprocess
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


def start(command: str, log: Path, **environment: str) -> subprocess.Popen:
    """A process of the scratch installation (redis-server, a worker, the web tier), in its own process group,
    writing to `log`."""
    return subprocess.Popen(shlex.split(command), cwd=ROOT, start_new_session=True, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env={**os.environ, **environment})


def stop(process: subprocess.Popen) -> None:
    """Stop the process and its group: TERM, then KILL after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def machine() -> str:
    """What the figures were taken on: system, cores, CPU model, Python, and the load average just before."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
              if line.startswith("model name")]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores "
            f"({models[0] if models else platform.machine()}), Python {platform.python_version()}; "
            f"load average before the run: {load}")
