"""Example hook plugins shipped with SiteSync.

Add this folder to ``hooks.plugin_paths`` to use them (``sitesync hooks list`` prints its
path), or copy one next to your own plugins and change it. Files starting with ``_``
(like this one) are not plugins. See docs/hooks.md.
"""
