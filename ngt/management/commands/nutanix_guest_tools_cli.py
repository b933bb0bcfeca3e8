"""manage.py nutanix_guest_tools_cli get_leader_location: for those with the platform's habit."""

from django.core.management.base import BaseCommand, CommandError

from ngt.daemon.commands import leader_location


class Command(BaseCommand):
    help = "Guest Tools Service queries, in the platform's words: get_leader_location."

    def add_arguments(self, parser) -> None:
        parser.add_argument("query", choices=["get_leader_location"])

    def handle(self, *args, query: str, **options) -> None:
        location = leader_location()
        if location is None:
            raise CommandError("no Guest Tools Service instance leads (none running, or Redis unreachable)")
        self.stdout.write(f"Leader host: {location['host']}\nLeader address: {location['address']}")
