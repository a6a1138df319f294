"""SiteSync settings: one JSON file, OpenPype's key names, validated and resolved at load.

Import from here, not from the modules: ``load_settings()`` gives frozen
:class:`Settings`; ``update_settings(mutator)`` is the only way to change the file.
"""

from __future__ import annotations

from app.redact import redact
from app.settings.load import (
    InvalidSettingsError,
    default_settings,
    load_settings,
    save_settings,
    update_settings,
)
from app.settings.local_id import ENV_LOCAL_ID, generate_local_id
from app.settings.resolved import (
    EngineSettings,
    HooksSettings,
    ProjectSettings,
    Settings,
    SiteConfig,
)
from app.settings.schema import (
    COMMON_SITE_OPTIONS,
    DEFAULT_SITE,
    ENGINE_OPTIONS,
    GLOBAL_OPTIONS,
    HOOKS_OPTIONS,
    LOCAL_SITE,
    MACHINE_SITE_KEYS,
    PLATFORMS,
    PROVIDER_OPTIONS,
    PROVIDERS,
    Option,
    current_platform,
)
from app.settings.validate import validate

__all__ = [
    "COMMON_SITE_OPTIONS",
    "DEFAULT_SITE",
    "ENGINE_OPTIONS",
    "ENV_LOCAL_ID",
    "GLOBAL_OPTIONS",
    "HOOKS_OPTIONS",
    "LOCAL_SITE",
    "MACHINE_SITE_KEYS",
    "PLATFORMS",
    "PROVIDERS",
    "PROVIDER_OPTIONS",
    "EngineSettings",
    "HooksSettings",
    "InvalidSettingsError",
    "Option",
    "ProjectSettings",
    "Settings",
    "SiteConfig",
    "current_platform",
    "default_settings",
    "generate_local_id",
    "load_settings",
    "redact",
    "save_settings",
    "update_settings",
    "validate",
]
