"""`python -m app` runs the SiteSync command line."""

import sys

from app.cli import main

sys.exit(main())
