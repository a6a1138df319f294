"""The lazy provider table: known kinds, unknown kinds, missing dependencies."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from providers import registry
from providers.local_drive import LocalDriveProvider


def test_create_provider_builds_local_drive(tmp_path):
    provider = registry.create_provider("local_drive", "studio", {"root": {"work": str(tmp_path)}})
    assert isinstance(provider, LocalDriveProvider)
    assert provider.site == "studio" and provider.kind == "local_drive"


def test_every_registered_kind_imports_and_matches():
    for kind in registry.provider_kinds():
        assert registry.provider_class(kind).kind == kind


@pytest.mark.parametrize("kind", ["dropbox", "", "Local_Drive", None])
def test_unknown_kind_names_the_setting_and_the_choices(kind):
    with pytest.raises(ConfigError) as caught:
        registry.create_provider(kind, "cloud", {})
    error = caught.value
    assert error.key == "sites.cloud.provider"
    assert error.fix == "use one of: " + ", ".join(registry.provider_kinds())
    assert "site 'cloud'" in str(error)


def test_missing_dependency_names_the_package(tmp_path, monkeypatch):
    (tmp_path / "sitesync_fake_provider.py").write_text(
        "import sitesync_dependency_not_installed\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.PROVIDERS, "fake", "sitesync_fake_provider:FakeProvider")
    with pytest.raises(ConfigError) as caught:
        registry.create_provider("fake", "cloud", {})
    error = caught.value
    assert "needs the Python package 'sitesync_dependency_not_installed'" in str(error)
    assert error.key == "sites.cloud.provider"
    assert "pip install sitesync_dependency_not_installed" in error.fix


def test_missing_dependency_uses_the_pip_name(tmp_path, monkeypatch):
    (tmp_path / "sitesync_fake_drive.py").write_text("import googleapiclient_missing_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.PROVIDERS, "fake", "sitesync_fake_drive:X")
    monkeypatch.setitem(registry._DISTRIBUTIONS, "googleapiclient_missing_x", "google-api-x")
    with pytest.raises(ConfigError, match="pip install google-api-x"):
        registry.create_provider("fake", "cloud", {})


def test_a_missing_provider_module_is_a_bug_not_a_user_error(monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, "fake", "providers.no_such_module:X")
    with pytest.raises(ModuleNotFoundError):
        registry.create_provider("fake", "cloud", {})


def test_a_table_entry_must_name_a_provider_of_that_kind(monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, "sftp", "providers.local_drive:LocalDriveProvider")
    with pytest.raises(TypeError):
        registry.provider_class("sftp")
