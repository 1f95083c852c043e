"""Routes of Hilo's contract whose real function has not landed yet (HTTP API): a JSON 501, never a fake success.

Each later issue moves its routes from this function to its own in template.yaml.
"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from shared.http import api_handler, create_app, error_response

app = create_app()


@app.exception_handler(NotFoundError)
def not_built_yet(_: NotFoundError) -> Response[str]:
    http = app.current_event.request_context.http
    return error_response(
        501,
        "not_implemented",
        f"{http.method} {app.current_event.raw_path} is part of Hilo's API but is not built yet.",
    )


lambda_handler = api_handler(app)
