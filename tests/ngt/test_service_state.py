"""The leader's batch of guest state: heartbeats alone move last_seen in one statement, facts and the link's
end are written per VM, and a VM that did both gets both."""

import pytest
from django.utils import timezone

from console.models import VM
from console.services import vms
from ngt.models import GuestTools
from ngt.service import guest_state


@pytest.mark.django_db(transaction=True)  # the service's functions close connections a test transaction holds
def test_a_batch_writes_heartbeats_facts_and_lost_links(vm, actor, run_tasks):
    for name in ("web-2", "web-3"):
        vms.request_create_vm(actor, vms.VMSpec(name=name, vcpus=1, memory_bytes=2**30))
    run_tasks()
    heard_only, hello_and_heard, lost = (VM.objects.get(name=name) for name in ("web-1", "web-2", "web-3"))
    for each in (heard_only, hello_and_heard, lost):
        GuestTools.objects.update_or_create(vm=each, defaults={"link_active": True})
    before = timezone.now()

    guest_state.write_batch({heard_only.pk, hello_and_heard.pk},
                            {hello_and_heard.pk: {"hostname": "web-2.example", "link_active": True},
                             lost.pk: {"link_active": False}})

    state = {row.vm_id: row for row in GuestTools.objects.all()}
    assert state[heard_only.pk].last_seen >= before and state[heard_only.pk].link_active
    assert state[hello_and_heard.pk].last_seen >= before and state[hello_and_heard.pk].hostname == "web-2.example"
    assert state[lost.pk].last_seen is None and not state[lost.pk].link_active
