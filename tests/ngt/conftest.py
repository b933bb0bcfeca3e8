"""Guest Tools fixtures: a key-encryption key file of the test's own, the agent's packages where the console
looks for them, and reading a tools ISO back."""

import subprocess
from pathlib import Path

import pytest

from ngt.agent.packaging.build import build
from ngt.services import guest_tools


@pytest.fixture(autouse=True)
def ca_key_file(tmp_path, monkeypatch) -> Path:
    """Each test gets its own key-encryption key file (made on first use), never the developer's."""
    path = tmp_path / "secrets" / "ca_key"
    monkeypatch.setenv("FACET_CA_KEY_FILE", str(path))
    return path


def iso_file(iso: Path, name: str, extension: str = "-J") -> bytes:
    """One file of an ISO, extracted by isoinfo (Joliet names by default)."""
    return subprocess.run(["isoinfo", extension, "-i", str(iso), "-x", f"/{name}"], check=True,
                          capture_output=True).stdout


@pytest.fixture(scope="session")
def built_packages(tmp_path_factory) -> Path:
    """The installer/ tree as `make guest-tools-packages` builds it, once per session (rpmbuild takes a while)."""
    out = tmp_path_factory.mktemp("guest-tools") / "packages"
    build(out)
    return out


@pytest.fixture
def guest_tools_packages(built_packages, settings) -> Path:
    """The packages in this test's data directory, where tools ISOs take their installer/ from."""
    target = guest_tools.guest_tools_packages()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(built_packages)
    return target
