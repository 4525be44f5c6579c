"""Key/team inventory from the gateway API (a real HTTP server on 127.0.0.1) or a file."""

import datetime as dt
import json

import pytest
from werkzeug import Request, Response

from helpers import local_http_server
from usage_jobs.defs.inventory.client import PAGE_SIZE, fetch_inventory
from usage_jobs.defs.inventory.parse import KEY_COLUMNS, InventoryError, parse_inventory, read_inventory_file

ADMIN_KEY = "sk-admin-test-1234"
KEYS = [{"token": f"{i:064x}", "key_alias": f"key-{i}", "team_id": "t1", "max_budget": 10, "expires": "2026-01-01T00:00:00Z"} for i in range(230)]
TEAMS = [{"team_id": "t1", "team_alias": "Team One", "max_budget": 100.0}]


def litellm_inventory(request: Request) -> Response:
    """LiteLLM's /key/list (paged) and /team/list, for the admin key only."""
    if request.headers.get("Authorization") != f"Bearer {ADMIN_KEY}":
        return Response(json.dumps({"error": "invalid key"}), 401, content_type="application/json")
    if request.path == "/key/list":
        page, size = int(request.args["page"]), int(request.args["size"])
        assert request.args["return_full_object"] == "true"
        pages = -(-len(KEYS) // size)
        body = {"keys": KEYS[(page - 1) * size: page * size], "total_count": len(KEYS), "current_page": page, "total_pages": pages}
    elif request.path == "/team/list":
        body = TEAMS
    else:
        return Response("{}", 404, content_type="application/json")
    return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def server():
    with local_http_server() as http:
        http.expect_request("").respond_with_handler(litellm_inventory)  # "": every path
        yield http


@pytest.fixture
def gateway(server):
    return server.url_for("").rstrip("/")


def test_every_page_of_keys_is_read(server, gateway):
    keys, teams = fetch_inventory(gateway, ADMIN_KEY)
    inventory = parse_inventory(keys, teams, "gateway")
    assert len(inventory.keys) == 230 and len(inventory.teams) == 1
    assert sum(request.path == "/key/list" for request, _ in server.log) == -(-230 // PAGE_SIZE)
    assert inventory.keys[0][1] == "key-0" and inventory.keys[0][9].year == 2026


def test_wrong_admin_key_is_a_clear_error_without_the_key(gateway):
    with pytest.raises(InventoryError, match="HTTP 401: GATEWAY_ADMIN_KEY is wrong") as error:
        fetch_inventory(gateway, "sk-wrong-secret")
    assert "sk-wrong-secret" not in str(error.value)


def test_unreachable_gateway_is_a_clear_error():
    with pytest.raises(InventoryError, match="ConnectError"):
        fetch_inventory("http://127.0.0.1:9", ADMIN_KEY, timeout=2)


def test_inventory_file_holds_both_responses(tmp_path):
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"keys": {"keys": KEYS[:3], "total_pages": 1}, "teams": {"teams": TEAMS}}))
    inventory = read_inventory_file(path)
    assert [k[1] for k in inventory.keys] == ["key-0", "key-1", "key-2"]
    path.write_text("[1, 2]")
    with pytest.raises(InventoryError, match="expected"):
        read_inventory_file(path)


@pytest.mark.parametrize(("item", "column", "expected"), [
    ({"max_budget": "25.5"}, "max_budget", 25.5),
    ({"max_budget": "unlimited"}, "max_budget", None),
    ({"expires": "2026-03-01T10:00:00"}, "expires", dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)),  # LiteLLM's naive times are UTC
    ({"expires": "never"}, "expires", None),
    ({"blocked": None}, "blocked", False),
    ({"models": ["qwen3-32b", 7]}, "models", ["qwen3-32b", "7"]),
    ({"models": "all-proxy-models"}, "models", []),
    ({"key_alias": {"nested": 1}}, "key_alias", None),
])
def test_an_odd_field_of_a_key_falls_back_to_its_default_and_keeps_the_key(item, column, expected):
    inventory = parse_inventory([{"token": "k" * 64, **item}], [], "gateway")
    assert inventory.keys[0][KEY_COLUMNS.index(column)] == expected


def test_keys_and_teams_without_an_id_are_left_out_and_the_rest_sorted_by_id():
    keys = [{"token": "b" * 64}, {"token": ""}, {"key_alias": "no hash"}, {"token_id": "a" * 64}]
    teams = [{"team_id": "t2"}, {"team_alias": "no id"}, {"team_id": "t1", "team_alias": "One"}]
    inventory = parse_inventory({"keys": keys}, {"teams": teams}, "gateway")
    assert [row[0] for row in inventory.keys] == ["a" * 64, "b" * 64]
    assert [row[:2] for row in inventory.teams] == [("t1", "One"), ("t2", None)]
