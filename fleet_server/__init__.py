"""The fleet server: what the fleet knows.

Layout (one job per module):
- `settings`  — the one configuration class (environment `UMMC_*`).
- `db`        — engines (SQLite pragmas, PostgreSQL), sessions, `migrate()`.
- `models`    — SQLAlchemy tables; `migrations/` the Alembic history of them.
- `protocol`  — the server's side of docs/protocol.md: topics, limits, payload
                validation (pydantic), ack payloads. No I/O.
- `ingest`    — `ingest_batch()` (one `data` message -> rows + ack decision),
                status messages, and the MQTT worker that drives them.
- `crud`      — keyword-only store queries shared by the CLI, ingest and API.
- `security`  — password hashing and opaque API tokens.
- `api/`      — the FastAPI app (`create_app`), routes per resource.
- `cli`       — `python -m fleet_server ...` (migrate, register, create-user,
                ingest, api, run).

Import rule: this package may import `device_drivers`, never `gateway` or
`firmware`; the two sides share only docs/protocol.md and its golden payloads.
"""
