"""`python -m firmware.tool ...`: the same as the `ummc-gateway` script."""

import sys

from firmware.tool.cli import main

sys.exit(main())
