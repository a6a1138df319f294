"""SiteSync: keeps an OpenPype/Avalon pipeline's published files in sync between sites."""

__version__ = "0.1.0"
