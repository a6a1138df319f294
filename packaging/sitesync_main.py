"""Entry script of the frozen app (build.spec): the `sitesync` command line.

PyInstaller runs this file as ``__main__``, outside any package, so the import is
absolute; ``app/__main__.py`` is not used because a package's ``__main__`` module is
meant for ``python -m app``.
"""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
