"""The `script` noun and the customization keys of `vm create` / `vm clone`, against a live console."""

import json

from console.models import VM
from customization.models import CustomizationScript, VMCustomization
from tests.cli.test_cli import facet, isolated, world  # noqa: F401  (the live console and the CLI runner)

GOOD = "#cloud-config\nruncmd:\n  - echo hello\n"
BAD = "#cloud-config\nruncmd: 5\n"


def test_validate_prints_compiler_style_problems_and_exits_1(world, facet, tmp_path):  # noqa: F811
    bad = tmp_path / "user-data"
    bad.write_text(BAD)
    code, out, _ = facet("script", "validate", f"file={bad}")
    assert code == 1
    assert f"{bad}:2:9: error:" in out and "INVALID" in out
    good = tmp_path / "ok.yaml"
    good.write_text(GOOD)
    code, out, _ = facet("script", "validate", f"file={good}")
    assert code == 0 and "valid" in out
    code, _, err = facet("script", "validate", f"file={tmp_path / 'missing'}")
    assert code == 2 and "cannot read" in err


def test_script_create_list_get_delete(world, facet, tmp_path):  # noqa: F811
    script = tmp_path / "hello.yaml"
    script.write_text(GOOD)
    code, _, err = facet("script", "create", "name=hello", "kind=cloud-init", f"file={script}")
    assert code == 0, err
    assert CustomizationScript.objects.get(name="hello").content == GOOD
    code, out, _ = facet("script", "list")
    assert code == 0 and "hello" in out and "cloud-init" in out
    code, out, _ = facet("script", "get", "name=hello", "--json")
    assert code == 0 and json.loads(out)["content"] == GOOD
    code, _, err = facet("script", "create", "name=other", "kind=windows", f"file={script}")
    assert code == 2 and "kind" in err
    assert facet("script", "delete", "name=hello")[0] == 0
    assert not CustomizationScript.objects.exists()


def test_vm_create_and_clone_take_a_customization(world, facet, tmp_path):  # noqa: F811
    user_data = tmp_path / "user-data"
    user_data.write_text(GOOD)
    code, _, err = facet("vm", "create", "name=app-01", "vcpus=1", "memory=1G", f"customization={user_data}")
    assert code == 0, err
    assert VMCustomization.objects.filter(vm__name="app-01").exists()
    code, _, err = facet("vm", "clone", f"vm-id={world.db.uuid}", "name=db-02", f"customization={user_data}",
                         "datasource=nocloud")
    assert code == 0, err
    assert VM.objects.get(name="db-02").customization.datasource == "nocloud"
    bad = tmp_path / "bad"
    bad.write_text(BAD)
    code, _, err = facet("vm", "create", "name=app-02", "vcpus=1", "memory=1G", f"customization={bad}")
    assert code == 1 and "line 2, column 9" in err
    assert not VM.objects.filter(name="app-02").exists()
