"""One module per resource; `api_router` joins them under /api/v1."""

from fastapi import APIRouter

from fleet_server.api.routes import auth, gateways, health, readings, rejections, units

api_router = APIRouter()
for module in (health, auth, readings, units, gateways, rejections):
    api_router.include_router(module.router)
