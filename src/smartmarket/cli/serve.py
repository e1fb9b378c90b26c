"""``smartmarket serve``: the web API and the live dashboard (uvicorn)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from smartmarket.cli.context import console, get_context

HELP = """Serve the web API and the dashboard: open http://HOST:PORT/ in a browser.

The API reads the store given by --store (default: the embedded DuckDB under SMARTMARKET_HOME). Starting
backtests needs SMARTMARKET_API_KEY (sent as the X-API-Key header; the dashboard asks for it); with
SMARTMARKET_API_READ_KEY set, reads need a key too. SMARTMARKET_API_CORS lists origins allowed by CORS.
With --bus (or SMARTMARKET_BUS) the dashboard follows the bus's candles and signals live.
OpenAPI: /openapi.json and /docs. Prometheus metrics: /metrics.

Examples:

  smartmarket serve

  SMARTMARKET_API_KEY=$(openssl rand -hex 16) smartmarket serve --host 0.0.0.0 --port 8080 --bus redis://127.0.0.1:6379/0
"""


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (0.0.0.0 for every one).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    bus_url: Annotated[
        str | None, typer.Option("--bus", envvar="SMARTMARKET_BUS", help="Bus URL: memory:// or redis://host:port/db.")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    import uvicorn

    from smartmarket.api.app import create_app
    from smartmarket.api.security import SecurityConfig

    app_ctx = get_context(ctx)
    bus: Any = None
    if bus_url:
        from smartmarket.bus import open_bus

        bus = open_bus(bus_url)
    security = SecurityConfig.from_env()
    app = create_app(app_ctx.settings, store=app_ctx.store, bus=bus, security=security)
    # SmartMarket's own loggers (WebSocket refusals, jobs) print with their level, like uvicorn's.
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    console.print(f"SmartMarket dashboard: http://{host}:{port}/  (API docs: /docs)", highlight=False)
    # uvicorn would buffer WebSocket frames up to 16 MiB before the app sees them: cap at the app's own limit.
    uvicorn.run(app, host=host, port=port, log_level=log_level, ws_max_size=security.ws_max_message_bytes)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve", help=HELP)(serve)


__all__ = ["register", "serve"]
