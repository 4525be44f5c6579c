"""`usage-report serve`: the report site for admins only.

The site holds no secret, so access is decided where it is served. A reader sends their
own gateway key (HTTP Basic password, or `Authorization: Bearer`); they are admitted if
the gateway says the key belongs to a user whose role is `proxy_admin` or
`proxy_admin_viewer` (`GET /key/info`, then `GET /user/info`), or if they hold one of the
admin tokens of USAGE_ADMIN_TOKENS. Answers are cached briefly (USAGE_AUTH_CACHE_SECONDS).
Everyone else gets 401 or 403 and nothing of the site; when the gateway cannot be asked,
503 and nobody is admitted with a gateway key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import mimetypes
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

ADMIN_ROLES = frozenset({"proxy_admin", "proxy_admin_viewer"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}


@dataclass(frozen=True)
class Decision:
    status: int  # 200 admitted, 401 no or unknown credential, 403 not an admin, 503 cannot check
    reason: str


class AccessPolicy:
    """Who may read the report, asked of the gateway and remembered for a short while."""

    def __init__(self, gateway_base_url: str | None, admin_tokens: list[str], *, cache_seconds: float = 60.0,
                 timeout: float = 5.0, transport: httpx.BaseTransport | None = None, clock=time.monotonic):
        self.admin_tokens = [t for t in admin_tokens if t]
        self.cache_seconds, self.clock = cache_seconds, clock
        self._cache: dict[str, tuple[float, Decision]] = {}
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
        decision = self._ask_gateway(credential)
        if decision.status != 503:  # an outage is not remembered: the next request asks again
            with self._lock:
                self._cache[fingerprint] = (self.clock(), decision)
        return decision

    def _ask_gateway(self, key: str) -> Decision:
        headers = {"Authorization": f"Bearer {key}"}
        try:
            key_info = self._client.get("/key/info", headers=headers)
            if key_info.status_code in (400, 401, 403, 404):
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


def make_server(site: Path, policy: AccessPolicy, host: str = "127.0.0.1", port: int = 0, log=None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "usage-report"
        sys_version = ""

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
            if log:
                log(f"{self.address_string()} {format % args}")

        def _refuse(self, decision: Decision) -> None:
            body = f"<!DOCTYPE html><title>{decision.status}</title><p>{decision.reason}</p>\n".encode()
            self.send_response(decision.status)
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            if decision.status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="IG1 usage report: your gateway key as the password", charset="UTF-8"')
            if decision.status == 503:
                self.send_header("Retry-After", "30")
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            decision = policy.decide(credential_from(self.headers.get("Authorization")))
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
            self.send_header("Content-Type", f"{kind}; charset=utf-8" if kind.startswith("text/") or kind.endswith("json") else kind)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_HEAD = do_GET

    return ThreadingHTTPServer((host, port), Handler)
