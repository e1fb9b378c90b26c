"""The web faces of SmartMarket: a FastAPI service (REST, WebSocket, Prometheus) and a live dashboard.

app = create_app(Settings(), store=open_store(url))          # uvicorn.run(app) or `smartmarket serve`
app.state.hub.publish(signal)                                # a live update to the dashboards
app.state.services.status.register_pipeline(provider)        # /api/pipeline reports the live pipeline
"""

from smartmarket.api.app import create_app
from smartmarket.api.security import SecurityConfig
from smartmarket.api.services import PipelineStatusProvider, QualityProvider, StatusBoard
from smartmarket.api.ws import LiveHub

__all__ = ["LiveHub", "PipelineStatusProvider", "QualityProvider", "SecurityConfig", "StatusBoard", "create_app"]
