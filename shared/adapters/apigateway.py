"""Reads an HTTP API's own route keys, so functions never keep a second copy of the routes."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.errors import RetryableError
from shared.routes import RouteTable


class ApiRouteCatalog:
    """Route tables of HTTP APIs, fetched once per API per process (routes change only on deploy)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        self._tables: dict[str, RouteTable] = {}

    def route_table(self, api_id: str) -> RouteTable:
        """Return the routes of ``api_id``.

        Raises
        ------
        RetryableError
            The API Gateway management API could not be read.
        """
        if api_id not in self._tables:
            self._tables[api_id] = RouteTable(self._fetch_route_keys(api_id))
        return self._tables[api_id]

    def _fetch_route_keys(self, api_id: str) -> list[str]:
        client = self._client or aws.client("apigatewayv2")
        self._client = client
        keys: list[str] = []
        request: dict[str, str] = {"ApiId": api_id}
        try:
            while True:
                page = client.get_routes(**request)
                keys.extend(item["RouteKey"] for item in page.get("Items", []))
                if not page.get("NextToken"):
                    return keys
                request["NextToken"] = page["NextToken"]
        except (ClientError, BotoCoreError) as error:
            raise RetryableError("Could not read the API's routes.") from error
