"""`usage-report serve`: the report site for admins only.

The site holds no secret, so access is decided where it is served. A reader sends their
own gateway key (HTTP Basic password, or `Authorization: Bearer`); they are admitted if
the gateway says the key belongs to a user whose role is `proxy_admin` or
`proxy_admin_viewer` (`GET /key/info`, then `GET /user/info`), or if they hold one of the
admin tokens of USAGE_ADMIN_TOKENS. Answers are cached briefly (USAGE_AUTH_CACHE_SECONDS).
Everyone else gets 401 or 403 (both with a `WWW-Authenticate` challenge, and a link to
`/sign-in`, which answers 401 until an admin's key is given, so a browser asks for another
key) and nothing of the site; when the gateway cannot be asked, 503 and nobody is admitted
with a gateway key.

The gateway's master key has no row in LiteLLM's key table, so its `/key/info` answers 404.
Serve never holds the master key; it asks the gateway instead: LiteLLM lets only its master
key call the routes of `LiteLLMRoutes.master_key_only_routes` (every other key gets 401,
"…which is only for MASTER KEY", from `user_api_key_auth`), so a key for which `/key/info`
is 404 and `GET /memory-usage-in-mem-cache` (one of them, read-only) is 200 is the master key.

The server holds a crowd: a thread per connection (at most `max_threads` at once), a listen
backlog of `request_queue_size`, and a socket timeout so a stalled reader frees its thread.
Concurrent first requests with the same key wait for one gateway lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import mimetypes
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

ADMIN_ROLES = frozenset({"proxy_admin", "proxy_admin_viewer"})
# LiteLLMRoutes.master_key_only_routes: a read-only route that only the gateway's master key may call.
MASTER_KEY_ONLY_ROUTE = "/memory-usage-in-mem-cache"
REALM = "IG1 usage report"
SIGN_IN_PATH = "/sign-in"
# Exactly what the pages need: style.css, report.js and the favicon from the site itself (bars are
# <meter> elements and charts inline SVG, so no inline style or script); nothing is fetched after load.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}


@dataclass(frozen=True)
class Decision:
    status: int  # 200 admitted, 401 no or unknown credential, 403 not an admin, 503 cannot check
    reason: str


class _Lookup:
    """One gateway lookup under way; requests with the same key wait for its decision."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.decision = Decision(503, "the gateway lookup did not finish: access cannot be checked now")


class AccessPolicy:
    """Who may read the report, asked of the gateway and remembered for a short while.

    Thread-safe; a burst of requests with one key makes one lookup per cache period."""

    max_cached = 10_000  # past this, expired answers are dropped

    def __init__(self, gateway_base_url: str | None, admin_tokens: list[str], *, cache_seconds: float = 60.0,
                 timeout: float = 5.0, transport: httpx.BaseTransport | None = None, clock=time.monotonic):
        self.admin_tokens = [t for t in admin_tokens if t]
        self.cache_seconds, self.clock, self.timeout = cache_seconds, clock, timeout
        self._cache: dict[str, tuple[float, Decision]] = {}
        self._pending: dict[str, _Lookup] = {}
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=gateway_base_url, timeout=timeout, transport=transport) if gateway_base_url else None

    def decide(self, credential: str | None) -> Decision:
        if not credential:
            return Decision(401, "sign in with your gateway key (or an admin token)")
        if any(hmac.compare_digest(credential.encode(), token.encode()) for token in self.admin_tokens):
            return Decision(200, "admin token")
        if self._client is None:
            return Decision(401, "not an admin token, and no gateway is configured to check gateway keys")
        fingerprint = hashlib.sha256(credential.encode()).hexdigest()  # the key itself is never kept
        with self._lock:
            cached = self._cache.get(fingerprint)
            if cached and self.clock() - cached[0] < self.cache_seconds:
                return cached[1]
            lookup = self._pending.get(fingerprint)
            leader = lookup is None
            if leader:
                lookup = self._pending[fingerprint] = _Lookup()
        if not leader:
            # Two gateway calls at most, each bounded by the client's timeout.
            lookup.done.wait(timeout=4 * self.timeout + 5)
            return lookup.decision
        try:
            lookup.decision = self._ask_gateway(credential)
        finally:
            with self._lock:
                if lookup.decision.status != 503:  # an outage is not remembered: the next request asks again
                    self._remember(fingerprint, lookup.decision)
                del self._pending[fingerprint]
            lookup.done.set()
        return lookup.decision

    def _remember(self, fingerprint: str, decision: Decision) -> None:
        now = self.clock()
        if len(self._cache) >= self.max_cached:
            for stale in [f for f, (at, _) in self._cache.items() if now - at >= self.cache_seconds]:
                del self._cache[stale]
        self._cache[fingerprint] = (now, decision)

    def _ask_gateway(self, key: str) -> Decision:
        headers = {"Authorization": f"Bearer {key}"}
        try:
            key_info = self._client.get("/key/info", headers=headers)
            if key_info.status_code == 404:  # the gateway accepts the key but has no virtual key for it
                return self._master_key_or_not(headers)
            if key_info.status_code in (400, 401, 403):
                return Decision(401, "the gateway does not accept this key (unknown, expired or revoked)")
            if key_info.status_code != 200:
                return Decision(503, f"the gateway answered HTTP {key_info.status_code} to /key/info: access cannot be checked now")
            user_id = (key_info.json().get("info") or {}).get("user_id")
            if not user_id:
                return Decision(403, "this key belongs to no user, so it has no admin role")
            user_info = self._client.get("/user/info", params={"user_id": user_id}, headers=headers)
            if user_info.status_code in (401, 403, 404):
                return Decision(403, "the gateway does not show this key's user as an admin")
            if user_info.status_code != 200:
                return Decision(503, f"the gateway answered HTTP {user_info.status_code} to /user/info: access cannot be checked now")
            body = user_info.json()
            role = (body.get("user_info") or {}).get("user_role") or body.get("user_role")
        except httpx.HTTPError as exc:
            return Decision(503, f"the gateway cannot be reached ({type(exc).__name__}): access cannot be checked now")
        except (ValueError, AttributeError):
            return Decision(503, "the gateway's answer is not what LiteLLM returns: access cannot be checked now")
        if role in ADMIN_ROLES:
            return Decision(200, f"gateway role {role}")
        return Decision(403, f"usage data is for admins; this key's user has the gateway role {role or 'none'}")

    def _master_key_or_not(self, headers: dict[str, str]) -> Decision:
        """Ask the gateway whether this is its master key: only the master key may call a master-key-only route."""
        probe = self._client.get(MASTER_KEY_ONLY_ROUTE, headers=headers)
        if probe.status_code == 200:
            return Decision(200, "the gateway's master key")
        if probe.status_code in (400, 401, 403, 404):
            return Decision(403, "the gateway has no virtual key for this key and does not take it for its master key")
        return Decision(503, f"the gateway answered HTTP {probe.status_code} to {MASTER_KEY_ONLY_ROUTE}: access cannot be checked now")


def credential_from(header: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>` or from the password of HTTP Basic."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def resolve_in_site(site: Path, url_path: str) -> Path | None:
    """The file a URL path names inside the site, or None: nothing outside it, however encoded."""
    path = unquote(urlsplit(url_path).path)
    if "\x00" in path or "\\" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    candidate = site.joinpath(*parts) if parts else site
    if candidate.is_dir():
        candidate = candidate / "index.html"
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, OSError):
        return None
    return resolved if resolved.is_relative_to(site.resolve()) and resolved.is_file() else None


class ReportServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_threads` at once (the rest wait in the backlog)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # the listen backlog: a burst of readers waits here instead of being dropped
    max_threads = 256

    def __init__(self, *args, **kwargs) -> None:
        self._slots = threading.BoundedSemaphore(self.max_threads)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_server(site: Path, policy: AccessPolicy, host: str = "127.0.0.1", port: int = 0, log=None) -> ReportServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "usage-report"
        sys_version = ""
        timeout = 30  # seconds a connection may stay silent before its thread is freed

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
            if log:
                log(f"{self.address_string()} {format % args}")

        def _refuse(self, decision: Decision) -> None:
            sign_in = (f'<p><a href="{SIGN_IN_PATH}">Sign in with another key</a> (an admin\'s gateway key as the password).</p>'
                       if decision.status in (401, 403) else "")
            body = (f"<!DOCTYPE html><title>{decision.status}</title><p>{html.escape(decision.reason)}</p>{sign_in}\n").encode()
            self.send_response(decision.status)
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            if decision.status in (401, 403):  # 403 too: the reader may hold another key
                self.send_header("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
                self.send_header("WWW-Authenticate", f'Bearer realm="{REALM}"' + (', error="insufficient_scope"' if decision.status == 403 else ""))
            if decision.status == 503:
                self.send_header("Retry-After", "30")
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _sign_in(self, decision: Decision) -> None:
            """401 until the reader's key is admitted (browsers ask for another key only on 401), then back to the report."""
            if decision.status == 503:
                return self._refuse(decision)
            if decision.status != 200:
                return self._refuse(Decision(401, decision.reason))
            self.send_response(303)
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            decision = policy.decide(credential_from(self.headers.get("Authorization")))
            if urlsplit(self.path).path == SIGN_IN_PATH:
                return self._sign_in(decision)
            if decision.status != 200:
                return self._refuse(decision)
            target = resolve_in_site(site, self.path)
            if target is None:
                return self._refuse(Decision(404, "no such page in the report"))
            content = target.read_bytes()
            self.send_response(200)
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_header("Content-Type", f"{kind}; charset=utf-8" if kind.startswith("text/") or kind.endswith(("json", "javascript")) else kind)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_HEAD = do_GET

    return ReportServer((host, port), Handler)
