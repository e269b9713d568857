"""`python -m identity`: the service's command line."""

from identity.cli import main

raise SystemExit(main())
