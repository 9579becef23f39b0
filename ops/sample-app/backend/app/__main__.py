"""Entry point of the container: check the start-up rules, then serve on 0.0.0.0:8000."""

from __future__ import annotations

import logging
import os
import sys

from app.settings import Settings, StartupRefused, check_startup


def main() -> int:
    """Refuse to start (one clear line, exit 78) or run uvicorn until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("backend")
    settings = Settings.from_env()
    try:
        check_startup(settings)
    except StartupRefused as exc:
        log.error("refusing to start: %s", exc)
        return 78  # EX_CONFIG
    import uvicorn

    from app.main import create_app

    log.info("starting (APP_ENV=%s, root path %s)", settings.app_env, settings.root_path)
    # nginx strips the /api prefix; root_path tells the app where it lives, for OpenAPI "servers" and /docs.
    uvicorn.run(create_app(settings), host="0.0.0.0", port=int(os.environ.get("PORT", "8000")),
                root_path=settings.root_path, proxy_headers=True, forwarded_allow_ips="*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
