"""GET /health (HTTP API): liveness of the API and of a function runtime. Touches no other resource."""

from shared import __version__
from shared.clock import now
from shared.http import api_handler, create_app

app = create_app()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "service": "hilo", "version": __version__, "time": now().isoformat()}


lambda_handler = api_handler(app)
