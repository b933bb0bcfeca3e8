"""manage.py sim_guests --host NAME: a simulated guest (`manage.py sim_guest`) for every running VM of a sim
host that has Guest Tools enabled, started and stopped as VMs power on and off and as Guest Tools are enabled
and disabled. `manage.py serve` runs it beside the host's Guest Tools Service instance when the host is a
simulated one, so the demo's links are live."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from console.models import VM, Host

from .sim_guest import stop


class Command(BaseCommand):
    help = "Run a simulated guest with the real agent for each running VM of a sim host with Guest Tools."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", required=True, help="the sim host whose VMs' guests to run")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between looks at the VMs")

    def handle(self, *args, host: str, interval: float, **options) -> None:
        target = Host.objects.filter(name=host).first()
        if target is None:
            raise CommandError(f"no host {host}")
        if not target.driver_uri.startswith("sim:"):
            raise CommandError(f"{host} runs {target.driver_uri}: only sim hosts have simulated guests")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        guests: dict[str, subprocess.Popen] = {}
        try:
            while True:
                self.reconcile(target, guests)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
        finally:
            for uuid in list(guests):
                stop(guests.pop(uuid))

    def reconcile(self, host: Host, guests: dict[str, subprocess.Popen]) -> None:
        """Start the guests of VMs that run with Guest Tools enabled, stop the others; a guest that died is
        started again at the next look."""
        wanted = {str(uuid) for uuid in VM.objects.filter(
            host=host, power_state=VM.PowerState.ON, guest_tools__enabled=True).values_list("uuid", flat=True)}
        for uuid in list(guests):
            if uuid not in wanted or guests[uuid].poll() is not None:
                stop(guests.pop(uuid))
        for uuid in sorted(wanted - guests.keys()):
            guests[uuid] = subprocess.Popen(
                [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "sim_guest", uuid])
