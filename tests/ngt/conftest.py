"""Guest Tools fixtures: a key-encryption key file of the test's own, and reading a tools ISO back."""

import subprocess
from pathlib import Path

import pytest


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
