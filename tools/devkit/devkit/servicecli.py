"""Several commands of one service's command line in one interpreter (``make run``'s setup).

``python -m devkit.servicecli identity '[["migrate"], ["seed-demo", "--out", "..."]]'`` runs
``identity.cli.main(["migrate"])`` then ``identity.cli.main(["seed-demo", ...])``, stopping
at the first that fails: the same as ``python -m identity migrate && python -m identity
seed-demo ...``, without paying for a second interpreter and the service's imports.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``argv``: the service's import name and a JSON list of argument lists."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    service, commands = args[0], json.loads(args[1])
    cli_main: Callable[[Sequence[str]], int] = importlib.import_module(f"{service}.cli").main
    for command in commands:
        code = cli_main([str(a) for a in command])
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
