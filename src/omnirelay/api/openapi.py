"""``GET /openapi.json``: an OpenAPI 3.1 document generated from the msgspec types that validate requests."""

from __future__ import annotations

from typing import Any

import msgspec

from omnirelay.domain import catalogue, model
from omnirelay.domain.inbound import InboundSmsList

_REQUESTS = [model.ScenarioIn, model.AdvancedRequest, model.SimpleRequest]
_RESPONSES = [
    model.Scenario,
    model.ScenarioList,
    model.SendResponse,
    model.Reports,
    model.Logs,
    model.ApiError,
    InboundSmsList,
]


def _ref(t: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{t.__name__}"}


def _json_body(t: type) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(t)}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "Error in Infobip's envelope", **_json_body(model.ApiError)} for c in codes}


def _ok(t: type, description: str = "OK") -> dict[str, Any]:
    return {"200": {"description": description, **_json_body(t)}}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _channel_param() -> dict[str, Any]:
    return _query("channel", {"type": "string", "enum": [c for c in model.InputChannel.__members__]})


def build() -> dict[str, Any]:
    """The whole document."""
    _, components = msgspec.json.schema_components(_REQUESTS + _RESPONSES, ref_template="#/components/schemas/{name}")
    security: list[dict[str, list[str]]] = [{"Basic": []}, {"App": []}]
    key_param = {"name": "scenarioKey", "in": "path", "required": True, "schema": {"type": "string"}}
    std = _errors(400, 401, 413, 500)
    paths: dict[str, Any] = {
        "/omni/1/scenarios": {
            "get": {
                "operationId": "list-scenarios",
                "parameters": [
                    _query("isDefault", {"type": "boolean"}, "Only the default scenario (or only the others)."),
                    _query("limit", {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100}),
                    _query("page", {"type": "integer", "minimum": 0, "default": 0}),
                ],
                "responses": {**_ok(model.ScenarioList), **_errors(400, 401, 500)},
            },
            "post": {
                "operationId": "create-scenario",
                "requestBody": {"required": True, **_json_body(model.ScenarioIn)},
                "responses": {**_ok(model.Scenario), **std},
            },
        },
        "/omni/1/scenarios/{scenarioKey}": {
            "parameters": [key_param],
            "get": {
                "operationId": "get-scenario",
                "responses": {**_ok(model.Scenario), **_errors(401, 404, 500)},
            },
            "put": {
                "operationId": "update-scenario",
                "requestBody": {"required": True, **_json_body(model.ScenarioIn)},
                "responses": {**_ok(model.Scenario), **_errors(400, 401, 404, 413, 500)},
            },
            "delete": {
                "operationId": "delete-scenario",
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 404, 500)},
            },
        },
        "/omni/1/advanced": {
            "post": {
                "operationId": "send-advanced",
                "requestBody": {"required": True, **_json_body(model.AdvancedRequest)},
                "responses": {**_ok(model.SendResponse), **std},
            }
        },
        "/omni/1/text": {
            "post": {
                "operationId": "send-text",
                "requestBody": {"required": True, **_json_body(model.SimpleRequest)},
                "responses": {**_ok(model.SendResponse), **std},
            }
        },
        "/omni/1/reports": {
            "get": {
                "operationId": "get-reports",
                "parameters": [
                    _query("bulkId", {"type": "string"}),
                    _query("messageId", {"type": "string"}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}),
                    _channel_param(),
                ],
                "responses": {**_ok(model.Reports), **_errors(400, 401, 500)},
            }
        },
        "/omni/1/logs": {
            "get": {
                "operationId": "get-logs",
                "parameters": [
                    _query("from", {"type": "string"}),
                    _query("to", {"type": "string"}),
                    _query("bulkId", {"type": "array", "items": {"type": "string"}}),
                    _query("messageId", {"type": "array", "items": {"type": "string"}}),
                    _query(
                        "generalStatus",
                        {
                            "type": "string",
                            "enum": ["ACCEPTED", *catalogue.STATUS_GROUPS],
                        },
                    ),
                    _channel_param(),
                    _query("sentSince", {"type": "string"}),
                    _query("sentUntil", {"type": "string"}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}),
                    _query("mcc", {"type": "string"}),
                    _query("mnc", {"type": "string"}),
                ],
                "responses": {**_ok(model.Logs), **_errors(400, 401, 500)},
            }
        },
        "/sms/1/inbox/reports": {
            "get": {
                "operationId": "get-inbound-sms-messages",
                "description": "Inbound SMS of the last 48 hours, oldest first, each returned once.",
                "parameters": [
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}),
                ],
                "responses": {**_ok(InboundSmsList), **_errors(400, 401, 500)},
            }
        },
    }
    for item in paths.values():
        for name, op in item.items():
            if name != "parameters":
                op["security"] = security
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "omnirelay OMNI API",
            "version": "1",
            "description": "Infobip OMNI failover API (/omni/1/*) as served by omnirelay.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "Basic": {"type": "http", "scheme": "basic"},
                "App": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "App <api key>",
                },
            },
        },
    }
