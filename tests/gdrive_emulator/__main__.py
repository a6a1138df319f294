"""Run the Drive emulator as its own process: ``python -m tests.gdrive_emulator [--port N]``.

Prints ``PORT <n>`` once it listens, then serves until killed. Accounts, folders and
settings are set through ``/_emulator/...`` (see ``FakeDrive._control``).
"""

from __future__ import annotations

import argparse
import sys
import threading

from tests.gdrive_emulator.server import FakeDrive


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.gdrive_emulator")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    drive = FakeDrive(port=args.port).start()
    print(f"PORT {drive.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        drive.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
