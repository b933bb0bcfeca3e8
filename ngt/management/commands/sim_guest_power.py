"""manage.py sim_guest_power VM shutdown|reboot: what `systemctl poweroff|reboot` does inside a simulated
guest. The sim guest's agent runs it as its power command, so a guest shutdown through Guest Tools ends with
the simulated VM off, as a real guest's does."""

from django.core.management.base import BaseCommand, CommandError

from console.core.drivers import driver_for
from console.models import VM

# What the guest's own shutdown and reboot look like from the hypervisor: like ACPI's, the guest's OS agreed.
HYPERVISOR_ACTION = {"shutdown": "shutdown", "reboot": "reboot"}


class Command(BaseCommand):
    help = "Power a simulated VM off (or reboot it) from inside its guest, as the guest's agent asks."

    def add_arguments(self, parser) -> None:
        parser.add_argument("vm", help="VM uuid")
        parser.add_argument("action", choices=sorted(HYPERVISOR_ACTION))

    def handle(self, *args, vm: str, action: str, **options) -> None:
        target = VM.objects.select_related("host").filter(uuid=vm).first()
        if target is None:
            raise CommandError(f"no VM {vm}")
        state = driver_for(target).power(target, HYPERVISOR_ACTION[action])
        self.stdout.write(f"sim guest of {target.name}: {action}, the VM is {state}")
