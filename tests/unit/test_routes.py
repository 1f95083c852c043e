"""Route keys are matched the way API Gateway HTTP APIs match them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.routes import RouteKey, RouteTable

TABLE = RouteTable(
    [
        "GET /health",
        "POST /v1/chat/sessions",
        "GET /v1/chat/sessions/{id}/messages",
        "POST /v1/chat/sessions/{id}/messages",
        "ANY /v1/customers/{proxy+}",
        "GET /v1/customers/search",
        "$default",
    ]
)


def test_exact_route_wins_over_a_greedy_one() -> None:
    match = TABLE.match("GET", "/v1/customers/search")
    assert match is not None
    assert match.route_key == "GET /v1/customers/search"


def test_path_variables_are_decoded() -> None:
    match = TABLE.match("POST", "/v1/chat/sessions/ses%2042/messages")
    assert match is not None
    assert match.path_parameters == {"id": "ses 42"}


def test_greedy_variable_takes_the_rest_of_the_path() -> None:
    match = TABLE.match("DELETE", "/v1/customers/cus_1/identities/phone")
    assert match is not None
    assert (match.route_key, match.path_parameters) == (
        "ANY /v1/customers/{proxy+}",
        {"proxy": "cus_1/identities/phone"},
    )


def test_greedy_variable_needs_at_least_one_segment() -> None:
    assert TABLE.match("GET", "/v1/customers") is None
    assert TABLE.match("GET", "/v1/customers/") is None


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("GET", "/health/extra"), ("PUT", "/health")])
def test_no_match_leaves_the_request_to_default(method: str, path: str) -> None:
    assert TABLE.match(method, path) is None
    assert TABLE.has_default


def test_allowed_methods_tell_a_wrong_method_from_an_unknown_path() -> None:
    assert TABLE.allowed_methods("/v1/chat/sessions/x/messages") == ["GET", "POST"]
    assert TABLE.allowed_methods("/v1/customers/anything") == ["ANY"]
    assert TABLE.allowed_methods("/unknown") == []


@pytest.mark.parametrize("key", ["/health", "GET health", "GET /a/{p+}/b", "GET  /x"])
def test_malformed_route_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValueError, match="route key"):
        RouteKey.parse(key)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_any_path_either_matches_or_not_without_raising(path: str) -> None:
    TABLE.match("GET", "/" + path)
    TABLE.allowed_methods("/" + path)
