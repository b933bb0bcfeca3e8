"""manage.py guest_tools_service --host NAME: one Guest Tools Service instance (proxy, and leader when
elected) for that host."""

import asyncio
import contextlib
import logging

from django.core.management.base import BaseCommand

from ngt.daemon.instance import floating_address, instance_for


class Command(BaseCommand):
    help = "Run the Guest Tools Service instance of one host (proxy; leader when it holds the lease)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", required=True, help="the host this instance serves")
        parser.add_argument("--address", default="", help="listen here (default: the host's address)")
        parser.add_argument("--vip", default="", help="the cluster VIP (default: the cluster's)")
        parser.add_argument("--release-vip", action="store_true",
                            help="only remove the cluster VIP from FACET_CLUSTER_VIP_INTERFACE and exit (the "
                                 "systemd unit's ExecStopPost: a killed leader leaves it behind)")

    def handle(self, *args, host: str, address: str, vip: str, release_vip: bool, **options) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        instance = instance_for(host, address, vip)
        if release_vip:
            floating = floating_address(instance.vip)
            if floating is not None:
                asyncio.run(floating.remove())
            return
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(instance.run())
