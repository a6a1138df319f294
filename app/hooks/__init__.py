"""Event hooks: plugins that react to sync events, each event handled once per plugin,
in a fixed order. See docs/hooks.md; the runner is :class:`HookRunner`."""

from __future__ import annotations

from app.hooks.plugin import HookContext, PluginError, Registrar, RetryLater
from app.hooks.runner import HookRunner
from app.hooks.status import HooksStatus, PluginStatus

__all__ = [
    "HookContext",
    "HookRunner",
    "HooksStatus",
    "PluginError",
    "PluginStatus",
    "Registrar",
    "RetryLater",
]
