"""Qt user interface (tray and Sync Queue window)."""
