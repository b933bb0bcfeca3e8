"""The VM list's Guest Tools filter (registered in apps.py); `guest_tools` is this app's one-to-one state of
a VM, absent until Guest Tools are enabled."""

from django.db.models import Q

GUEST_TOOLS_CHOICES = [("not-installed", "Not installed"), ("enabled", "Enabled"), ("iso-mounted", "ISO mounted"),
                       ("link-active", "Link active"), ("link-inactive", "Enabled, link inactive")]
GUEST_TOOLS_STATES = {
    "enabled": Q(guest_tools__enabled=True),
    "iso-mounted": Q(guest_tools__iso_mounted=True),
    "link-active": Q(guest_tools__link_active=True),
    "link-inactive": Q(guest_tools__enabled=True, guest_tools__link_active=False),
}


def filter_guest_tools(queryset, value: str):
    if value == "not-installed":
        return queryset.exclude(guest_tools__enabled=True)
    return queryset.filter(GUEST_TOOLS_STATES[value])
