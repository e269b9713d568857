"""`python -m settlement`: the service's command line."""

from settlement.cli import main

raise SystemExit(main())
