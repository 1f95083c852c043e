"""The HTTP API's $default route: JSON 405 (with Allow) for a known path and a wrong method, JSON 404 otherwise.

API Gateway's own answer for both is a bare 404; the route table is read from the API itself (cached per
cold start) so template.yaml stays the only list of routes.
"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from shared.adapters.apigateway import ApiRouteCatalog
from shared.http import api_handler, create_app, error_response

app = create_app()
catalog = ApiRouteCatalog()


@app.exception_handler(NotFoundError)
def unmatched_route(_: NotFoundError) -> Response[str]:
    event = app.current_event
    method, path = event.request_context.http.method, event.raw_path
    allowed = catalog.route_table(event.request_context.api_id).allowed_methods(path)
    if allowed:
        return error_response(
            405,
            "method_not_allowed",
            f"{method} is not allowed on {path}; use {', '.join(allowed)}.",
            [{"allowed_methods": allowed}],
            {"Allow": ", ".join(allowed)},
        )
    return error_response(404, "not_found", f"No route for {method} {path}.")


lambda_handler = api_handler(app)
