"""Print a short-lived Bearer token signed with $JWT_SECRET_KEY (for smoke tests).

    docker compose ... exec -T backend python -m app.mint_token [--sub NAME] [--ttl SECONDS]
"""

from __future__ import annotations

import argparse
import os
import sys

from app.auth import mint


def main(argv: list[str] | None = None) -> int:
    """Print one token on stdout; exit 2 with a message when no key is configured."""
    parser = argparse.ArgumentParser(prog="python -m app.mint_token", description=__doc__.splitlines()[0])
    parser.add_argument("--sub", default="runbook-smoke", help="token subject (default: runbook-smoke)")
    parser.add_argument("--ttl", type=int, default=300, help="lifetime in seconds (default: 300)")
    args = parser.parse_args(argv)
    secret = os.environ.get("JWT_SECRET_KEY", "")
    if not secret:
        print("mint_token: JWT_SECRET_KEY is not set", file=sys.stderr)
        return 2
    print(mint(secret, args.sub, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
