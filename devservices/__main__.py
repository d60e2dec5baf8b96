"""``python -m devservices ...``: see ``devservices.cli``."""

import sys

from devservices.cli import main

sys.exit(main())
