"""`python -m issuance`: the service's command line."""

from issuance.cli import main

raise SystemExit(main())
