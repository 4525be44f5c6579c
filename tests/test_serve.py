"""`usage-report serve` against a small fake gateway on 127.0.0.1: only admins read the site,
a crowd of readers is answered, and the pages run under a CSP with no inline script or style."""

import base64
import concurrent.futures
import contextlib
import html
import http.client
import io
import json
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from werkzeug import Request, Response

from helpers import local_http_server
from usage_jobs.serve import AccessPolicy, make_server

MASTER_KEY = "sk-gateway-master-key"  # known to the fake gateway only: serve is never told it
USERS = {"admin-key": ("u-admin", "proxy_admin"), "viewer-key": ("u-viewer", "proxy_admin_viewer"),
         "internal-key": ("u-internal", "internal_user"), "orphan-key": (None, None),
         "hostile-role-key": ("u-hostile", "<img src=x onerror=alert(1)>"), "script-role-key": ("u-script", "<script>alert('role')</script>")}
AUTHENTICATED_NOT_KEYS = {MASTER_KEY, "sso-session-token"}  # pass LiteLLM's auth, but have no row in its key table


def _proxy_error(message, kind, code):
    """LiteLLM's ProxyException body."""
    return {"error": {"message": message, "type": kind, "param": "key" if code == 404 else "None", "code": str(code)}}


class FakeGateway:
    """LiteLLM's answers (litellm/proxy, 1.110) to the calls serve makes, for virtual keys and for its master key.

    * `/key/info` without `key=` describes the caller's own key; for the master key, which
      passes `user_api_key_auth` but has no row in LiteLLM_VerificationToken, it is 404
      "Key not found in database" (`info_key_fn`); an unknown key is 401 (auth error).
    * `/memory-usage-in-mem-cache` is in `LiteLLMRoutes.master_key_only_routes`: 200 for the
      master key, 401 "…which is only for MASTER KEY" for every other key.
    """
    calls: list[tuple[str, str]] = []
    delay = 0.0

    @classmethod
    def respond(cls, request: Request) -> Response:
        status, body = cls._answer(request)
        return Response(json.dumps(body), status, content_type="application/json")

    @classmethod
    def _answer(cls, request: Request) -> tuple[int, dict]:
        key = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        cls.calls.append((request.path, key))
        time.sleep(cls.delay)
        if key not in USERS and key not in AUTHENTICATED_NOT_KEYS:  # revoked or unknown keys
            return 401, _proxy_error("Authentication Error, Invalid proxy server token passed.", "auth_error", 401)
        if request.path == "/memory-usage-in-mem-cache":
            if key != MASTER_KEY:
                return 401, _proxy_error(f"Authentication Error, Tried to access route={request.path}, which is only for MASTER KEY", "auth_error", 401)
            return 200, {"num_items_in_user_api_key_cache": 3, "num_items_in_llm_router_cache": 0}
        if request.path == "/key/info":
            if key in AUTHENTICATED_NOT_KEYS:
                return 404, _proxy_error("Key not found in database", "not_found_error", 404)
            return 200, {"key": "hashed", "info": {"user_id": USERS[key][0], "team_id": "t1"}}
        if request.path == "/user/info" and key in USERS:
            user_id, role = USERS[key]
            assert request.args.getlist("user_id") == [user_id]
            return 200, {"user_id": user_id, "user_info": {"user_role": role}}
        return 404, {"detail": "Not Found"}


@contextlib.contextmanager
def fake_gateway(delay: float = 0.0) -> Iterator[str]:
    """The fake gateway on 127.0.0.1 (threaded: serve asks it from many threads at once); yields its URL."""
    FakeGateway.calls, FakeGateway.delay = [], delay
    with local_http_server(threaded=True) as server:
        server.expect_request("").respond_with_handler(FakeGateway.respond)  # "": every path
        yield server.url_for("").rstrip("/")
    FakeGateway.delay = 0.0


def _lookups(path, key=None):
    return [c for c in FakeGateway.calls if c[0] == path and (key is None or c[1] == key)]



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
    with fake_gateway() as url:
        yield url


@pytest.fixture
def report(site, gateway):
    policy = AccessPolicy(gateway, ["configured-admin-token"], cache_seconds=60)
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
    assert len(_lookups("/key/info")) == 1


def test_a_gateway_outage_gives_a_clear_503_and_admits_no_gateway_key(site):
    with fake_gateway() as url:
        pass  # nothing listens there any more
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


# --- asking for another key, the master key, what the gateway says ------------------------

def test_401_and_403_both_ask_the_browser_for_a_key(report):
    for response in (_get(report), _get(report, "revoked-key"), _get(report, "internal-key")):
        assert response.status_code in (401, 403)
        challenge = response.headers.get("WWW-Authenticate", "")
        assert challenge.startswith('Basic realm="IG1 usage report"'), (response.status_code, challenge)
        assert 'href="/sign-in"' in response.text  # browsers prompt on 401 only: a link that asks for another key


def test_sign_in_asks_again_until_an_admin_key_is_given(report):
    assert _get(report, path="/sign-in").status_code == 401
    refused = _get(report, "internal-key", basic=True, path="/sign-in")  # the browser's remembered key is not an admin's
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic") and "usage report</h1>" not in refused.text
    admitted = httpx.get(report + "/sign-in", headers={"Authorization": "Bearer admin-key"}, follow_redirects=False)
    assert admitted.status_code == 303 and admitted.headers["Location"] == "/"


def test_the_gateways_master_key_is_admitted_because_the_gateway_says_it_is(report):
    # /key/info answers 404 for the master key, as LiteLLM does; serve never holds the master key itself.
    response = _get(report, MASTER_KEY, basic=True)
    assert response.status_code == 200 and response.text == "<h1>usage report</h1>"
    assert [c[0] for c in FakeGateway.calls] == ["/key/info", "/memory-usage-in-mem-cache"]
    # A credential LiteLLM accepts but that is neither a virtual key nor its master key: authenticated, not an admin.
    other = _get(report, "sso-session-token")
    assert other.status_code == 403 and "usage report</h1>" not in other.text
    assert _get(report, "admin-key").status_code == 200  # and virtual keys never call the master-key route
    assert _lookups("/memory-usage-in-mem-cache", "admin-key") == []


@pytest.mark.parametrize(("key", "markup"), [("hostile-role-key", "<img"), ("script-role-key", "<script")])
def test_what_the_gateway_says_is_escaped_in_the_refusal(report, key, markup):
    response = _get(report, key)
    role = USERS[key][1]
    assert response.status_code == 403 and markup not in response.text
    assert html.escape(role) in response.text


# --- a crowd ------------------------------------------------------------------------------

@pytest.fixture
def crowd_gateway():
    with fake_gateway(delay=0.3) as url:  # a slow gateway widens every race
        yield url


def _burst(url_paths_keys, timeout=60.0):
    """Every request at once, each on its own socket; (status, body length, seconds) per request."""
    barrier = threading.Barrier(len(url_paths_keys))

    def one(item):
        url, key = item
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
        barrier.wait()
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, len(response.read()), time.monotonic() - started
        except urllib.error.HTTPError as error:
            return error.code, 0, time.monotonic() - started
        except OSError as error:
            return repr(error), 0, time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(len(url_paths_keys)) as pool:
        return list(pool.map(one, url_paths_keys))


def test_200_concurrent_readers_of_the_built_site_are_all_answered(demo_site, crowd_gateway):
    site = demo_site.site_dir
    pages = ["/", "/style.css", "/report.js", "/periods/last-7-days/teams.html", "/periods/2026-11/keys.html",
             "/periods/2026-W47/models.html", "/periods/last-30-days/reconciliation.html", "/periods/last-7-days/exports/keys.csv"]
    assert all((site / p.lstrip("/")).is_file() or p == "/" for p in pages)
    policy = AccessPolicy(crowd_gateway, ["crowd-admin-token"], cache_seconds=60)
    server = _start(make_server(site, policy))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    keys = ["admin-key", "viewer-key", "crowd-admin-token", MASTER_KEY]
    try:
        results = _burst([(base + pages[i % len(pages)], keys[i % len(keys)]) for i in range(200)])
    finally:
        server.shutdown()
        server.server_close()
    failures = [r for r in results if r[0] != 200 or r[1] == 0]
    assert failures == [], f"{len(failures)} of 200 readers not answered: {failures[:5]}"
    assert max(r[2] for r in results) < 30, sorted(r[2] for r in results)[-5:]


def test_a_burst_asks_the_gateway_once_per_key_per_cache_period(site, crowd_gateway):
    policy = AccessPolicy(crowd_gateway, [], cache_seconds=60)
    server = _start(make_server(site, policy))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    keys = ["admin-key", "viewer-key", "internal-key", "revoked-key", MASTER_KEY]
    try:
        results = _burst([(base + "/", keys[i % len(keys)]) for i in range(100)])
    finally:
        server.shutdown()
        server.server_close()
    expected = {"admin-key": 200, "viewer-key": 200, "internal-key": 403, "revoked-key": 401, MASTER_KEY: 200}
    assert Counter((keys[i % len(keys)], r[0]) for i, r in enumerate(results)) == Counter({(k, s): 20 for k, s in expected.items()})
    lookups = Counter(FakeGateway.calls)
    assert all(count == 1 for count in lookups.values()), lookups
    assert {key for _, key in lookups} == set(keys)


def test_the_cache_is_asked_again_after_its_period_and_an_outage_is_not_remembered(gateway):
    now = [0.0]
    policy = AccessPolicy(gateway, [], cache_seconds=60, clock=lambda: now[0])
    assert policy.decide("admin-key").status == 200 and policy.decide("admin-key").status == 200
    assert len(_lookups("/key/info")) == 1
    now[0] = 61.0
    assert policy.decide("admin-key").status == 200 and len(_lookups("/key/info")) == 2


# --- the pages under a strict CSP ---------------------------------------------------------

STRICT = {"default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self'", "base-uri": "'none'",
          "form-action": "'none'", "frame-ancestors": "'none'"}


def test_every_answer_carries_a_csp_without_inline_script_or_style(report):
    for response in (_get(report, "admin-key"), _get(report), _get(report, "internal-key")):
        policy = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";") if d.strip())
        assert {k: policy.get(k) for k in STRICT} == STRICT, policy
        assert "unsafe" not in response.headers["Content-Security-Policy"]


def test_no_page_has_inline_script_style_or_handlers_and_every_script_is_the_sites_own(demo_site):
    site = demo_site.site_dir
    pages = list(site.rglob("*.html"))
    assert len(pages) > 100 and (site / "report.js").is_file()
    # The picker's daily rows, and each period's data the key, keys, tag and end-user pages draw.
    scripts = {(site / "report.js").resolve()} | {path.resolve() for path in [*(site / "range").glob("*.js"), *(site / "periods").glob("*/*.js")]}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", text), page  # every script is a file
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", text, re.IGNORECASE), page
        for src in re.findall(r'<script[^>]*\ssrc="([^"]+)"', text):
            assert (page.parent / html.unescape(src)).resolve() in scripts, (page, src)
    teams = (site / "periods" / "last-7-days" / "teams.html").read_text(encoding="utf-8")
    assert 'src="../../report.js"' in teams and "<meter" in teams


@pytest.fixture(scope="module")
def served_strictly(demo_site):
    """The demo site through `usage-report serve`'s own server, its readers' keys checked by the fake gateway."""
    with fake_gateway() as gateway_url:
        server = _start(make_server(demo_site.site_dir, AccessPolicy(gateway_url, [])))
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()


def _meter_fill(browser, meter) -> float:
    """The share of a bar's width painted in the accent colour, measured on a screenshot."""
    from PIL import Image

    image = Image.open(io.BytesIO(meter.screenshot_as_png)).convert("RGB")
    row = image.height // 2
    painted = sum(1 for x in range(image.width) if _is_accent(image.getpixel((x, row))))
    return painted / image.width


def _is_accent(pixel) -> bool:
    r, g, b = pixel
    return abs(r - 0x00) < 40 and abs(g - 0x72) < 40 and abs(b - 0xB2) < 40


def test_chromium_reads_the_served_pages_with_no_csp_violation(browser, served_strictly, demo_site):
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": "Bearer admin-key"}})
    watcher = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")})
    try:
        for path in ("index.html", "periods/last-7-days/teams.html", "periods/2026-11/keys.html", "periods/2026-W47/models.html",
                     "periods/last-7-days/reconciliation.html", "periods/2026-W47/quality.html"):
            browser.get_log("browser")
            browser.get(f"{served_strictly}/{path}")
            assert browser.execute_script("return document.readyState") == "complete"
            assert browser.find_element(By.TAG_NAME, "h1").text, path  # the page itself, not a refusal
            console = browser.get_log("browser")
            assert not [e for e in console if "Content Security Policy" in e["message"]], (path, console)
            assert not [e for e in console if e["level"] == "SEVERE"], (path, console)
            assert browser.execute_script("return window.__csp") == [], path

        browser.get(f"{served_strictly}/periods/last-7-days/teams.html")
        meters = browser.find_elements(By.CSS_SELECTOR, "#teams meter")
        assert len(meters) >= 10
        for meter in meters[:4]:
            share = float(meter.get_attribute("value")) / float(meter.get_attribute("max"))
            assert meter.size["width"] > 0 and meter.size["height"] > 0
            fill = _meter_fill(browser, meter)
            assert fill > 0 and abs(fill - share) < 0.08, (share, fill)
        rows = browser.find_elements(By.CSS_SELECTOR, "#teams tbody tr[data-name]")
        browser.find_element(By.ID, "team-filter").send_keys("legal")
        assert [row.get_attribute("data-name") for row in rows if row.is_displayed()] == ["Legal"]
        assert browser.execute_script("return window.__csp") == []

        # The same page opened from the file system: report.js is found by its relative path.
        browser.get((demo_site.site_dir / "periods" / "last-7-days" / "teams.html").as_uri())
        rows = browser.find_elements(By.CSS_SELECTOR, "#teams tbody tr[data-name]")
        browser.find_element(By.ID, "team-filter").send_keys("legal")
        assert [row.get_attribute("data-name") for row in rows if row.is_displayed()] == ["Legal"]
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": watcher["identifier"]})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})

