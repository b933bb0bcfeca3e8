"""The VM list's filter and the bulk action's body against any input (hypothesis): any query string of
`GET /api/v1/vms/` is a page of VMs or a 400 (404 past the last page), any body of `POST /api/v1/vms/bulk/` a task
or a refusal (400, 409) naming what is wrong; never a server error. In-process: the test client raises what a
web process would answer with a 500."""

import json
from urllib.parse import quote

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from console.core.registry import registry
from console.filtersets import vm_filterset
from console.models import VM

LIMITS = {"max_examples": 150, "deadline": None,
          "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
FILTER_KEYS = sorted(vm_filterset().base_filters)
ODD_TEXT = st.text(max_size=12) | st.sampled_from(["", "on", "off", "true", "0", "-1", "1e9", "%", "\x00", "\ud800",
                                                   "web-1", "3f2b9c1e-8d4a-4f1e-9c1a-2b3c4d5e6f70"])
QUERY = st.lists(st.tuples(st.sampled_from([*FILTER_KEYS, "ordering", "page", "page_size"]) | st.text(max_size=6),
                           ODD_TEXT | st.binary(max_size=6)), max_size=5)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ODD_TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                  max_size=3), max_leaves=8)


@settings(**LIMITS)
@given(QUERY)
@example([("power_state", "on"), ("power_state", "bogus")])
@example([("search", "\x00")])
def test_any_vm_list_query_is_a_page_or_a_400(api, vm, query):
    """The query string as any client may send it: percent-encoded bytes, not UTF-8 ones included."""
    def encoded(part: str | bytes) -> str:
        return quote(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"), safe="")

    answer = api.get("/api/v1/vms/?" + "&".join(f"{encoded(key)}={encoded(value)}" for key, value in query))
    event(f"status {answer.status_code}")
    assert answer.status_code in (200, 400, 404), answer.content
    if answer.status_code == 200:
        assert answer.json()["count"] <= VM.objects.count()


def bulk_bodies(vm_uuid: str) -> st.SearchStrategy:
    actions = st.sampled_from(sorted(registry.bulk_actions)) | ODD_TEXT
    filters = st.dictionaries(st.sampled_from(FILTER_KEYS) | st.text(max_size=6), JSON | ODD_TEXT, max_size=3)
    uuids = st.lists(st.just(vm_uuid) | st.uuids().map(str) | ODD_TEXT, max_size=3)
    plausible_filter = st.dictionaries(st.sampled_from(FILTER_KEYS), st.sampled_from(
        ["web", "on", "off", "true", "false", "linux", "", "host-1"]) | st.lists(st.sampled_from(["on", "off"])),
                                       max_size=2)
    plausible = st.fixed_dictionaries({"action": st.sampled_from(sorted(registry.bulk_actions))}, optional={
        "all": st.booleans(), "confirm_count": st.integers(min_value=0, max_value=2)}).flatmap(
        lambda body: st.one_of(st.just({**body, "uuids": [vm_uuid]}), plausible_filter.map(
            lambda chosen: {**body, "filter": chosen})))
    anything = st.fixed_dictionaries({"action": actions | JSON}, optional={
        "uuids": uuids | JSON, "filter": filters | JSON, "all": st.booleans() | JSON,
        "confirm_count": st.integers(min_value=-2, max_value=3) | JSON}) | JSON
    return plausible | anything


@settings(**LIMITS)
@given(data=st.data())
def test_any_bulk_body_is_a_task_or_a_refusal(api, vm, data):
    body = data.draw(bulk_bodies(str(vm.uuid)))
    event(f"status {answer_to(api, body).status_code}")


def test_a_list_for_a_one_value_filter_is_a_400_not_a_server_error(api, vm):
    """Found by the test above: a list for a boolean filter made the filter's form widget raise TypeError."""
    answer = answer_to(api, {"action": "power-off", "filter": {"is_template": ["on"]}})
    assert answer.status_code == 400
    assert answer.json() == {"filter": ["is_template: give one value, not a list"]}
    assert answer_to(api, {"action": "power-off", "filter": {"power_state": ["on", "off"]}}).status_code == 202


def answer_to(api, body):
    answer = api.post("/api/v1/vms/bulk/", json.dumps(body), content_type="application/json")
    assert answer.status_code in (202, 400, 409), answer.content
    if answer.status_code != 202:
        assert answer.json()  # says what is wrong
    return answer
