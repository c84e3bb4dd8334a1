"""The dashboard's guards: the ``auth=`` hook and CSRF protection of every action.

**CSRF** is a signed double-submit token. The first page a browser loads sets a random nonce in
a cookie (``HttpOnly``, ``SameSite=Lax``, scoped to the dashboard's path); every form carries
``nonce.signature`` where the signature is an HMAC-SHA256 of the nonce under the dashboard's
secret. An action is accepted only when the form's token (or an ``X-CSRF-Token`` header) signs
the nonce of the request's own cookie. Another site can neither read the cookie nor, should it
manage to plant one (a sibling subdomain), sign it. The secret is random per process unless
given (``create_app(secret=...)``, ``$ASYNCTASK_WEB_SECRET``): several dashboard processes
behind one load balancer need the same one.

**Auth.** ``auth`` is called with each request (pages, actions and static files alike), plain or
``async``. Returning ``False`` answers 401; raising
:class:`starlette.exceptions.HTTPException` answers with its status and headers (a 401 with
``WWW-Authenticate: Basic`` makes a browser ask for a password, a 403 refuses).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["COOKIE", "AuthHook", "AuthMiddleware", "Csrf"]

#: The cookie holding the CSRF nonce.
COOKIE = "asynctask_csrf"
#: The form field (or header, ``X-CSRF-Token``) carrying the signed token.
FIELD = "csrf"

#: ``auth(request) -> bool`` (or awaitable bool); ``False`` refuses with 401.
AuthHook = Callable[[Request], bool | Awaitable[bool]]


class Csrf:
    """Issues and checks signed double-submit tokens; see the module docstring."""

    def __init__(self, secret: str | bytes | None = None) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        self._key = secret or secrets.token_bytes(32)

    def nonce(self, request: Request) -> tuple[str, bool]:
        """The request's nonce from its cookie, or a fresh one (``True``: set the cookie)."""
        nonce = request.cookies.get(COOKIE, "")
        if 16 <= len(nonce) <= 64 and nonce.isascii() and nonce.replace("-", "").replace("_", "").isalnum():
            return nonce, False
        return secrets.token_urlsafe(24), True

    def token(self, nonce: str) -> str:
        """The token forms carry for ``nonce``."""
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, request: Request, token: str | None) -> bool:
        """Whether ``token`` signs the nonce in the request's cookie."""
        nonce = request.cookies.get(COOKIE)
        if not nonce or not token:
            return False
        claimed, _, signature = token.partition(".")
        return hmac.compare_digest(claimed, nonce) and hmac.compare_digest(signature, self._sign(nonce))

    def set_cookie(self, response: Response, request: Request, nonce: str) -> None:
        response.set_cookie(
            COOKIE,
            nonce,
            path=request.scope.get("root_path") or "/",
            httponly=True,
            # Lax, not Strict: a link from elsewhere (a chat message) would otherwise arrive
            # without the cookie and replace it, invalidating the forms of the tabs already open.
            # Lax still withholds it from other sites' POSTs, and the signed token is required.
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()


class AuthMiddleware:
    """Calls the ``auth`` hook before anything else answers."""

    def __init__(self, app: ASGIApp, hook: AuthHook) -> None:
        self.app = app
        self.hook = hook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            allowed = self.hook(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except HTTPException as exc:
            refusal = PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
            await refusal(scope, receive, send)
            return
        if not allowed:
            await PlainTextResponse("not authorized", status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)
