"""The FastAPI application factory: thin on purpose. Routes live in
`routes/`, dependencies in `deps`. The app owns a session factory on
`app.state`; `run` also puts the ingest worker there for /healthz."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine

from fleet_server.api.routes import api_router, metrics
from fleet_server.db import make_engine, session_factory
from fleet_server.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if own_engine:
            engine.dispose()

    app = FastAPI(title="UMMC fleet server", version="0.1.0", lifespan=lifespan,
                  openapi_url=f"{API_PREFIX}/openapi.json", docs_url="/docs",
                  redoc_url=None)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.ingest_worker = None
    app.include_router(api_router, prefix=API_PREFIX)
    # Prometheus scrapes /metrics by default (same route, same access rule)
    app.include_router(metrics.root_router)
    return app
