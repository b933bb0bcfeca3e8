import os

from django.core.management.base import BaseCommand, CommandError

from console.core.registry import registry
from console.models import Cluster
from console.services import demo


class Command(BaseCommand):
    help = "Create (or complete) the demo cluster and the admin user. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--vms", type=int, default=60, help="VMs the demo cluster should have (default 60)")

    def handle(self, *args, vms: int, **options):
        if not 0 <= vms <= 100_000:
            raise CommandError("--vms takes 0 to 100000")
        result = demo.seed(vms)
        user, password = demo.ensure_admin(os.environ.get("FACET_ADMIN_PASSWORD"))
        self.stdout.write(f"demo cluster {result['cluster']}: {result['vms']} VMs ({result['vms_added']} added)")
        cluster = Cluster.objects.get(name=result["cluster"])
        for seed in registry.demo_seeders.values():
            if said := seed(cluster):
                self.stdout.write(said)
        if password and not os.environ.get("FACET_ADMIN_PASSWORD"):
            self.stdout.write(self.style.WARNING(f"admin login: admin / {password}   (shown once; keep it)"))
        elif password:
            self.stdout.write("admin login: admin / the password in FACET_ADMIN_PASSWORD")
        else:
            self.stdout.write("admin login: admin / the password printed when it was first created "
                              "(set FACET_ADMIN_PASSWORD to change it)")
