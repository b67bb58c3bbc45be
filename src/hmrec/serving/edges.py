"""What every answer gets at the edge: security headers (a Content-Security-Policy admitting the demo's own scripts
and the API docs' inline ones by hash), HEAD on every GET route, and messages without absolute paths."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# an absolute path: after a space, a quote or the start, or sqlite:////abs, never inside a URL (http://host/x)
_ABSOLUTE_PATH = re.compile(r"(?:(?<![\w.:/])|(?<=:///))/(?=[\w.-])[^\s'\"`:;,()\[\]<>]*")


def script_hashes(pages: Iterable[str]) -> list[str]:
    """CSP sources ('sha256-...') for the inline <script> blocks of these HTML pages."""
    return [f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
            for page in pages for body in _INLINE_SCRIPT.findall(page)]


def content_security_policy(inline_scripts: list[str]) -> str:
    """Scripts and everything else from this origin only (plus the hashed inline scripts); styles may be inline
    (Swagger UI sets them); images also as data: URIs (Swagger UI's icons); no framing, plugins or foreign forms."""
    return "; ".join([
        "default-src 'self'", f"script-src 'self' {' '.join(inline_scripts)}".strip(),
        "style-src 'self' 'unsafe-inline'", "img-src 'self' data:", "connect-src 'self'", "object-src 'none'",
        "base-uri 'self'", "form-action 'self'", "frame-ancestors 'none'"])


class EdgeMiddleware:
    """Adds the security headers to every answer, and answers HEAD on a GET route as GET without the body."""

    def __init__(self, app: ASGIApp, policy: str):
        self.app = app
        self.headers = [(b"content-security-policy", policy.encode()), (b"x-content-type-options", b"nosniff"),
                        (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def without_paths(text: str, workdir: Path) -> str:
    """`text` for an answer: paths under the workdir as HMREC_WORKDIR/..., other absolute paths by their name only
    (the log keeps the full message)."""
    roots = sorted({str(workdir.absolute()), str(workdir.resolve())}, key=len, reverse=True)

    def public(match: re.Match) -> str:
        path = match.group(0)
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return "HMREC_WORKDIR" + path[len(root):]
        return Path(path).name or "/"

    if not workdir.is_absolute():
        text = text.replace(f" {workdir}", " HMREC_WORKDIR")
    return _ABSOLUTE_PATH.sub(public, text)
