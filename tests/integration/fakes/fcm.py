"""A fake of FCM HTTP v1 and Google's OAuth2 token endpoint on loopback, enforcing what Google documents.

Token endpoint (``POST /token``, form-encoded): ``grant_type`` must be
``urn:ietf:params:oauth:grant-type:jwt-bearer`` (else ``unsupported_grant_type``); the ``assertion`` must be a
JWT signed RS256 whose signature verifies against the public key of the service account its ``iss`` names
(and whose ``kid`` is that key's id), with ``aud`` this endpoint, a ``scope`` that grants FCM, and a lifetime of
at most an hour that has not ended (else ``invalid_grant``). It answers a fresh access token and its
``expires_in`` (:attr:`FakeFcm.token_lifetime_s`, short in tests of the renewal).

Send (``POST /v1/projects/{project}/messages:send``): the bearer token must be one this fake issued, still live,
to a service account of that project (else 401 ``UNAUTHENTICATED`` / 403 ``PERMISSION_DENIED``). The body is
validated against ``SendMessageRequest`` of the published FCM v1 OpenAPI document (``fcm-v1-openapi.json``,
see tests/integration/fakes/README.md), with unknown fields refused as Google's JSON parser does, and exactly one
of ``token``, ``topic``, ``condition``: any violation answers 400 ``INVALID_ARGUMENT``. Registration tokens the
test marks :meth:`unregister` answer 404 ``UNREGISTERED``; :meth:`fail_next` queues other FCM errors.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jsonschema_rs
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.fakes.server import ThreadServer

SPEC = Path(__file__).parent / "fcm-v1-openapi.json"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = {"https://www.googleapis.com/auth/firebase.messaging", "https://www.googleapis.com/auth/cloud-platform"}


@functools.cache
def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = json.loads(SPEC.read_text())["components"]["schemas"]
    return schemas


@functools.cache
def _validator() -> Any:
    return jsonschema_rs.Draft4Validator(
        {"components": {"schemas": _schemas()}, "$ref": "#/components/schemas/SendMessageRequest"}
    )


def _unknown_fields(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Fields the document does not define (Google refuses them: "Unknown name ... Cannot find field")."""
    if "$ref" in schema:
        schema = _schemas()[schema["$ref"].rsplit("/", 1)[1]]
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f'Unknown name "{key}" at \'{where}\': Cannot find field.')
            else:
                found += _unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    return found


def send_errors(body: Any) -> list[str]:
    """What the FCM v1 document (and Google's parser) says is wrong with a ``messages:send`` body."""
    if not isinstance(body, dict):
        return ["Invalid JSON payload received: not an object"]
    errors = [str(e) for e in _validator().iter_errors(body)]
    errors += _unknown_fields(body, {"$ref": "#/components/schemas/SendMessageRequest"}, "")
    message = body.get("message")
    if not isinstance(message, dict):
        return [*errors, "message is required"]
    targets = [k for k in ("token", "topic", "condition") if message.get(k)]
    if len(targets) != 1:
        errors.append(f"exactly one of token, topic, condition is required (got {targets})")
    ttl = (message.get("android") or {}).get("ttl")
    if ttl is not None and not (isinstance(ttl, str) and ttl.endswith("s") and ttl[:-1].replace(".", "", 1).isdigit()):
        errors.append(f"android.ttl {ttl!r} is not a google-duration")
    return errors


@dataclass
class ServiceAccountKey:
    """A service account of the fake: its key file (as Google hands it out) and its public key."""

    email: str
    project_id: str
    key_id: str
    private_pem: str
    public_key: Any

    def key_file(self, token_uri: str) -> dict[str, Any]:
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": self.private_pem,
            "client_email": self.email,
            "client_id": "112233445566778899",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }

    def write(self, path: Path, token_uri: str) -> Path:
        path.write_text(json.dumps(self.key_file(token_uri)))
        return path


def new_key(project_id: str, name: str = "omnirelay") -> ServiceAccountKey:
    """A fresh RSA service-account key for ``project_id``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    email = f"{name}@{project_id}.iam.gserviceaccount.com"
    return ServiceAccountKey(email, project_id, secrets.token_hex(20), pem, private.public_key())


@dataclass
class TokenRequest:
    form: dict[str, str]
    status: int
    claims: dict[str, Any] | None


@dataclass
class Send:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    name: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def token(self) -> str | None:
        return (self.json.get("message") or {}).get("token")


def google_error(http_status: int, status: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    """Google's error envelope, with FCM's ``FcmError`` detail when ``error_code`` is given."""
    error: dict[str, Any] = {"code": http_status, "message": message, "status": status}
    if error_code is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
    return {"error": error}


class FakeFcm(ThreadServer):
    """The fake token endpoint (``{url}/token``) and FCM send endpoint for the service accounts it knows."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, ServiceAccountKey] = {}
        self.token_lifetime_s = 3599
        self.issued: dict[str, tuple[str, float]] = {}
        """access token -> (the service account's e-mail, expiry)."""
        self.token_requests: list[TokenRequest] = []
        self.sends: list[Send] = []
        self.unregistered: set[str] = set()
        self.errors: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self.held: dict[str, threading.Event] = {}
        """Registration tokens whose sends get no answer until their event is set."""
        self.waiting: list[str] = []
        """Registration tokens of the sends being held now."""
        self._names = itertools.count(1_500_415_314_455_276)

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def add_key(self, key: ServiceAccountKey) -> ServiceAccountKey:
        with self.lock:
            self.keys[key.email] = key
        return key

    def unregister(self, token: str) -> None:
        """Answer sends to this registration token with 404 ``UNREGISTERED`` (the app was uninstalled)."""
        with self.lock:
            self.unregistered.add(token)

    def fail_next(self, http_status: int, status: str, error_code: str | None, message: str = "",
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next valid send with this FCM error."""
        with self.lock:
            self.errors.append((http_status, google_error(http_status, status, message, error_code), headers or {}))

    def hold(self, token: str) -> threading.Event:
        """Leave each send to the registration token ``token`` unanswered until the returned event is set."""
        with self.lock:
            event = self.held[token] = threading.Event()
        return event

    def revoke_tokens(self) -> None:
        """Forget every access token issued (sends with them get 401 until a new one is asked for)."""
        with self.lock:
            self.issued.clear()

    def accepted(self) -> list[Send]:
        with self.lock:
            return [s for s in self.sends if s.status == 200]

    def sends_to(self, token: str) -> list[Send]:
        with self.lock:
            return [s for s in self.sends if s.token == token]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)

    # --- the token endpoint ---------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        raw = (await request.read()).decode()
        form = {k: v[0] for k, v in parse_qs(raw).items()}

        def refuse(error: str, description: str, claims: dict[str, Any] | None = None) -> web.Response:
            with self.lock:
                self.token_requests.append(TokenRequest(form, 400, claims))
            return web.json_response({"error": error, "error_description": description}, status=400)

        if request.content_type != "application/x-www-form-urlencoded":
            return refuse("invalid_request", "the body must be application/x-www-form-urlencoded")
        if form.get("grant_type") != GRANT_TYPE:
            return refuse("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type')}")
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return refuse("invalid_grant", f"Invalid JWT: {exc}")
        key = self.keys.get(str(unverified.get("iss")))
        if key is None:
            return refuse("invalid_grant", "Invalid JWT: unknown issuer", unverified)
        if header.get("alg") != "RS256" or header.get("kid") not in (None, key.key_id):
            return refuse("invalid_grant", "Invalid JWT: wrong alg or kid", unverified)
        try:
            claims = jwt.decode(assertion, key.public_key, algorithms=["RS256"], audience=self.token_url,
                                options={"require": ["iss", "aud", "iat", "exp", "scope"]})
        except jwt.InvalidSignatureError:
            return refuse("invalid_grant", "Invalid JWT Signature.", unverified)
        except jwt.PyJWTError as exc:
            return refuse("invalid_grant", f"Invalid JWT: {exc}", unverified)
        if int(claims["exp"]) - int(claims["iat"]) > 3600 or int(claims["iat"]) > time.time() + 60:
            return refuse("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)", claims)
        if not SCOPES & set(str(claims["scope"]).split()):
            return refuse("invalid_scope", "the scope does not grant FCM", claims)
        access = "ya29.fake-" + secrets.token_urlsafe(24)
        with self.lock:
            self.issued[access] = (key.email, time.time() + self.token_lifetime_s)
            self.token_requests.append(TokenRequest(form, 200, claims))
        return web.json_response({"access_token": access, "expires_in": self.token_lifetime_s, "token_type": "Bearer"})

    # --- the send endpoint ----------------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.Response:
        raw = await request.read()
        project = request.match_info["project"]

        def answer(status: int, body: dict[str, Any], name: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
            with self.lock:
                self.sends.append(Send(request.path, dict(request.headers), raw, status, name))
            return web.json_response(body, status=status, headers=headers)

        auth = request.headers.get("Authorization", "")
        with self.lock:
            issued = self.issued.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if issued is None or issued[1] < time.time():
            return answer(401, google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. "
                                            "Expected OAuth 2 access token."))
        if self.keys[issued[0]].project_id != project:
            return answer(403, google_error(403, "PERMISSION_DENIED", f"Permission denied on projects/{project}"))
        invalid = google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "INVALID_ARGUMENT")
        if not request.content_type.startswith("application/json"):
            return answer(400, invalid)
        try:
            body = json.loads(raw)
        except ValueError:
            return answer(400, invalid)
        errors = send_errors(body)
        if errors:
            return answer(400, google_error(400, "INVALID_ARGUMENT", "; ".join(errors), "INVALID_ARGUMENT"))
        token = body["message"].get("token")
        with self.lock:
            held = self.held.get(token)
            if held is not None:
                self.waiting.append(token)
        while held is not None and not held.is_set():
            await asyncio.sleep(0.02)
        with self.lock:
            unregistered = token in self.unregistered
            queued = self.errors.pop(0) if self.errors and not unregistered else None
        if unregistered:
            return answer(404, google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"))
        if queued is not None:
            status, error, headers = queued
            return answer(status, error, headers=headers)
        name = f"projects/{project}/messages/0:{next(self._names)}%31bd1c9631bd1c96"
        return answer(200, {"name": name}, name)
