"""``/auth/1/*``: sessions (``POST`` / ``DELETE /auth/1/session``, used as ``Authorization: IBSSO <token>``) and
OAuth2 client credentials (``POST /auth/1/oauth2/token``, used as ``Authorization: Bearer <token>``).

Only the SHA-256 of a token is stored, so a token works on every API process of the database at once and a copy
of the database opens nothing. Following Infobip, a user has one session at a time: it ends after
``session_idle_minutes`` without use, or with ``DELETE /auth/1/session``; a new one cannot be made while it lasts
(Infobip answers with the same token again, which a store of hashes cannot).
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid

import msgspec
from aiohttp import web

from omnirelay.api.auth import TOKEN_KINDS, Authenticator, scheme_of
from omnirelay.api.errors import ApiProblem, bad_request, envelope, from_msgspec
from omnirelay.domain.credentials import key_hash
from omnirelay.store.base import Account, Store


class SessionRequest(msgspec.Struct):
    """The body of ``POST /auth/1/session`` (other fields, such as Infobip's ``unsafe``, are ignored)."""

    username: str
    password: str


_session_request = msgspec.json.Decoder(SessionRequest)


class AuthRoutes:
    """The routes of ``/auth/1/``: they check credentials themselves (they are public to the auth middleware)."""

    def __init__(
        self, store: Store, auth: Authenticator, session_idle_seconds: float, oauth_token_seconds: float
    ) -> None:
        self._store = store
        self._auth = auth
        self._idle = session_idle_seconds
        self._lifetime = oauth_token_seconds

    def add_to(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_post("/auth/1/session", self.create_session)
        app.router.add_delete("/auth/1/session", self.end_session)
        app.router.add_post("/auth/1/oauth2/token", self.oauth_token)

    async def create_session(self, request: web.Request) -> web.Response:
        """Username and password → ``{"token": …}``, valid until ``session_idle_minutes`` pass without use."""
        try:
            body = _session_request.decode(await request.read())
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise from_msgspec(exc) from None
        account = await self._auth.password_account(body.username, body.password)
        if account is None:
            return envelope(401)
        token = str(uuid.uuid4())
        now = time.time()
        made = await self._store.add_auth_token(
            account.id, key_hash(token), "session", now, now + self._idle, self._idle, only_one=True
        )
        if not made:
            raise ApiProblem(
                400,
                "A session is already open for this user: end it with DELETE /auth/1/session (with its IBSSO token,"
                " or with Basic or App credentials) before creating a new one",
            )
        return web.json_response({"token": token})

    async def end_session(self, request: web.Request) -> web.Response:
        """End the caller's session: the one whose IBSSO token is sent, or with Basic or App credentials the user's
        open session (a Bearer token ends itself)."""
        header = request.headers.get("Authorization")
        account = await self._auth.account(header)
        if account is None or header is None:
            return envelope(401)
        scheme, credentials = scheme_of(header)
        if scheme in TOKEN_KINDS:
            await self._store.remove_auth_tokens(account.id, TOKEN_KINDS[scheme], key_hash(credentials))
            self._auth.forget(header)
        else:
            await self._store.remove_auth_tokens(account.id, "session")
        return web.Response(status=204)

    async def oauth_token(self, request: web.Request) -> web.Response:
        """OAuth2 client credentials (RFC 6749 4.4): the client id is the username, the secret its password or one of
        its API keys, in the form or as HTTP Basic; → ``{"access_token", "token_type", "expires_in"}``."""
        try:
            form = await request.post()
        except (ValueError, UnicodeDecodeError):
            raise ApiProblem(400, "Malformed form body", {"body": ["not application/x-www-form-urlencoded"]}) from None
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        basic = _basic_client(request.headers.get("Authorization"))
        if basic is not None and "client_id" not in fields:
            fields["client_id"], fields["client_secret"] = basic
        for name in ("grant_type", "client_id", "client_secret"):
            if not fields.get(name):
                raise bad_request({name: ["is required"]})
        if fields["grant_type"] != "client_credentials":
            raise bad_request({"grant_type": ["must be client_credentials"]})
        account = await self._client(fields["client_id"], fields["client_secret"])
        if account is None:
            return envelope(401)
        token = secrets.token_urlsafe(32)
        now = time.time()
        await self._store.add_auth_token(
            account.id, key_hash(token), "oauth", now, now + self._lifetime, None, only_one=False
        )
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": int(self._lifetime)},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    async def _client(self, client_id: str, secret: str) -> Account | None:
        account = await self._auth.password_account(client_id, secret)
        if account is not None:
            return account
        by_key = await self._store.account_by_key_hash(key_hash(secret))
        return by_key if by_key is not None and by_key.username == client_id else None


def _basic_client(header: str | None) -> tuple[str, str] | None:
    """The client id and secret of an ``Authorization: Basic`` header, if it holds them."""
    if not header:
        return None
    scheme, credentials = scheme_of(header)
    if scheme != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
    except ValueError:
        return None
    return (client_id, secret) if sep else None
