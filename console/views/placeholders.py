"""Pages whose features arrive with later work; they say so instead of pretending."""

from django.shortcuts import render

from .base import role_required

COMING = {
    "volume-groups": ("Volume Groups", "Volume groups (disks you attach to VMs and Docker hosts) arrive with "
                      "container services."),
    "docker-hosts": ("Docker Hosts", "Docker hosts and the Facet volume plugin arrive with container services."),
    "guest-tools": ("Guest Tools", "Guest Tools (certificate authority, tools ISO, in-guest agent) arrive with "
                    "the Guest Tools work."),
    "customization-scripts": ("Customization Scripts", "cloud-init and Sysprep scripts arrive with OS "
                              "customization."),
}


@role_required()
def coming(request, page: str):
    title, text = COMING[page]
    return render(request, "console/coming.html", {"title": title, "text": text})
