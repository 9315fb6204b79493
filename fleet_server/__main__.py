"""`python -m fleet_server ...`: see fleet_server/cli.py."""

from fleet_server.cli import main

raise SystemExit(main())
