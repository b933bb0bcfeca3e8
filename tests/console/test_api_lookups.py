"""An object named by something that is not a whole UUID is a 404, never a server error (found by schemathesis)."""

import pytest


@pytest.mark.parametrize("path", [
    "/api/v1/vms/{bad}/", "/api/v1/vms/{bad}/snapshots/", "/api/v1/vms/{vm}/snapshots/{bad}/",
    "/api/v1/hosts/{bad}/", "/api/v1/tasks/{bad}/",
])
def test_a_uuid_of_36_hex_digits_without_dashes_is_a_404(api, vm, path):
    answer = api.get(path.format(bad="0" * 36, vm=vm.uuid))
    assert answer.status_code == 404


def test_the_metrics_of_a_vm_are_documented_as_a_200_or_a_400(api, vm):
    schema = api.get("/api/schema/?format=json").json()
    assert {"200", "400"} <= set(schema["paths"]["/api/v1/vms/{uuid}/metrics/"]["get"]["responses"])
    assert api.get(f"/api/v1/vms/{vm.uuid}/metrics/").status_code == 200
    assert api.get(f"/api/v1/vms/{vm.uuid}/metrics/?step=0").status_code == 400


def test_a_snapshot_without_a_parent_or_requester_is_within_the_schema(api):
    schema = api.get("/api/schema/?format=json").json()
    snapshot = schema["components"]["schemas"]["Snapshot"]["properties"]
    assert snapshot["parent"].get("nullable") and snapshot["created_by"].get("nullable")
