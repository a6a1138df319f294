"""Sample settings documents shared by the settings tests."""

from __future__ import annotations

import copy
from typing import Any

LOCAL_ID = "test-machine-01"


def valid_raw() -> dict[str, Any]:
    """A complete, valid document with POSIX paths (tests load it with platform="linux")."""
    return copy.deepcopy({
        "database_url": "",
        "database_name": "avalon",
        "local_id": LOCAL_ID,
        "retry_cnt": 3,
        "loop_delay": 60,
        "publish_site": "studio",
        "remote_site": "gdrive",
        "always_accessible_on": [],
        "sites": {
            "studio": {"provider": "local_drive", "root": {"work": "/mnt/studio/work"}},
            "local": {"provider": "local_drive", "root": {"work": "/home/artist/work"}},
            "gdrive": {
                "provider": "gdrive",
                "credentials_url": {"windows": "C:/creds.json", "linux": "/etc/creds.json",
                                    "darwin": "/Users/x/creds.json"},
                "root": {"work": "/My Drive/work"},
            },
            "sftp": {
                "provider": "sftp", "sftp_host": "files.example.com", "sftp_port": 22,
                "sftp_user": "pipeline", "sftp_pass": "hunter2-secret",
                "root": {"work": "/data/work"},
            },
        },
        "projects": {},
        "engine": {"workers_per_site": 8, "lease_s": 60, "backoff_base_s": 10,
                   "backoff_max_s": 3600, "progress_interval_s": 1.0, "serve_site": ""},
    })
