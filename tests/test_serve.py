"""`usage-report serve` against a small fake gateway on 127.0.0.1: only admins read the site."""

import base64
import http.client
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from helpers import JsonHandler

from usage_jobs.serve import AccessPolicy, make_server

USERS = {"admin-key": ("u-admin", "proxy_admin"), "viewer-key": ("u-viewer", "proxy_admin_viewer"),
         "internal-key": ("u-internal", "internal_user"), "orphan-key": (None, None)}


class FakeGateway(JsonHandler):
    calls: list[str] = []

    def do_GET(self):
        FakeGateway.calls.append(self.path)
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        url = urlsplit(self.path)
        if key not in USERS:  # revoked or unknown keys
            return self._send(401, {"error": {"message": "Authentication Error, invalid key"}})
        user_id, role = USERS[key]
        if url.path == "/key/info":
            return self._send(200, {"key": "hashed", "info": {"user_id": user_id, "team_id": "t1"}})
        if url.path == "/user/info":
            assert parse_qs(url.query)["user_id"] == [user_id]
            return self._send(200, {"user_id": user_id, "user_info": {"user_role": role}})
        self._send(404, {})



def _start(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    (root / "periods" / "last-7-days").mkdir(parents=True)
    (root / "index.html").write_text("<h1>usage report</h1>")
    (root / "periods" / "last-7-days" / "index.html").write_text("<h1>week</h1>")
    (tmp_path / "secret.txt").write_text("outside the site")
    return root


@pytest.fixture
def gateway():
    server = _start(ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway))
    FakeGateway.calls = []
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def report(site, gateway):
    policy = AccessPolicy(f"http://127.0.0.1:{gateway.server_address[1]}", ["configured-admin-token"], cache_seconds=60)
    server = _start(make_server(site, policy))
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _get(url, key=None, basic=False, path="/"):
    headers = {}
    if key and basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"me:{key}".encode()).decode()
    elif key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.get(url + path, headers=headers)


def test_admins_and_admin_viewers_read_the_site_with_their_gateway_key(report):
    for key in ("admin-key", "viewer-key"):
        response = _get(report, key)
        assert response.status_code == 200 and response.text == "<h1>usage report</h1>"
    assert _get(report, "viewer-key", basic=True, path="/periods/last-7-days/").text == "<h1>week</h1>"  # a browser's Basic sign-in
    assert _get(report, "configured-admin-token").status_code == 200


def test_everyone_else_gets_nothing_of_the_site(report):
    internal = _get(report, "internal-key")
    assert internal.status_code == 403 and "internal_user" in internal.text and "usage report" not in internal.text
    revoked = _get(report, "revoked-key")
    assert revoked.status_code == 401 and "revoked" in revoked.text
    anonymous = _get(report)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert _get(report, "orphan-key").status_code == 403


def test_the_gateways_answer_is_cached_briefly(report, gateway):
    for _ in range(3):
        assert _get(report, "admin-key").status_code == 200
    assert len([c for c in FakeGateway.calls if c.startswith("/key/info")]) == 1


def test_a_gateway_outage_gives_a_clear_503_and_admits_no_gateway_key(site):
    dead = ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)
    url = f"http://127.0.0.1:{dead.server_address[1]}"
    dead.server_close()  # nothing listens there any more
    server = _start(make_server(site, AccessPolicy(url, [], timeout=1.0)))
    try:
        response = _get(f"http://127.0.0.1:{server.server_address[1]}", "admin-key")
        assert response.status_code == 503 and "cannot be reached" in response.text and "usage report" not in response.text
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/periods/..%2f..%2fsecret.txt", "/periods/%2e%2e/%2e%2e/secret.txt",
                                  "/..\\secret.txt", "//etc/passwd", "/periods/last-7-days/../../../secret.txt", "/%00index.html"])
def test_no_path_leaves_the_site(report, path):
    # http.client sends the path as written (httpx would normalise the dots away first).
    connection = http.client.HTTPConnection(*urlsplit(report).netloc.split(":"))
    connection.request("GET", path, headers={"Authorization": "Bearer admin-key"})
    response = connection.getresponse()
    body = response.read().decode()
    assert response.status in (400, 404) and "outside the site" not in body and "root:" not in body
