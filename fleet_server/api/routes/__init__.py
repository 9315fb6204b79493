"""One module per resource; `api_router` joins them under /api/v1."""

from fastapi import APIRouter

from fleet_server.api.routes import (
    alerts,
    auth,
    commands,
    credentials,
    encounters,
    exports,
    firmware,
    fleet,
    gateways,
    health,
    instruments,
    maintenance,
    metrics,
    places,
    readings,
    rejections,
    units,
)

api_router = APIRouter()
for module in (health, auth, encounters, readings, units, gateways, rejections, places,
               instruments, maintenance, exports, fleet, alerts, commands, metrics,
               credentials, firmware):
    api_router.include_router(module.router)
