"""The OpenAPI 3.1.0 document of the HTTP gateway for a file's services.

Built from the gateway's tables (``_http``): one ``POST /{Service}/{method}``
per method (operationId ``Service.method``, tagged with its service), the
routine routes and ``/openapi.json``. Bodies use the shared schema pool
(``_schemas``, JSON Schema 2020-12 as OpenAPI 3.1 takes it); problems are
written from ``_http.PROBLEMS``, a declared error as a 422 problem of its own.
Security schemes are always among the components, required only when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._contract import MethodSpec, ServiceSpec
from .._event import EventSpec
from . import _http as http
from ._contracts import Contracts
from ._failure import VALUE, error_fields, tagged_schema, type_path
from ._refs import COMPONENTS, rebase
from ._schemas import DEFS, arguments_name, event_name, result_name, schema_pool

__all__ = ["VERSION", "openapi_document"]

VERSION = "3.1.0"
_PROBLEMS = {p.key: p for p in http.PROBLEMS}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": COMPONENTS + name}


def _problem_name(key: str) -> str:
    return f"http.problem.{key}"


def _error_name(cls: type) -> str:
    return f"http.error.{cls.__module__}.{cls.__qualname__}"


def _status_name(method: MethodSpec) -> str:
    return f"http.{method.service}.{method.name}.status"


def openapi_document(
    contracts: Contracts, *, security: Sequence[str] = (), version: str = "1.0.0"
) -> dict[str, Any]:
    """The OpenAPI document of the gateway serving ``contracts``; ``security`` (keys of
    ``_http.SECURITY_SCHEMES``) makes every route but ``/openapi.json`` require one."""
    unknown = [s for s in security if s not in http.SECURITY_SCHEMES]
    if unknown:
        raise ValueError(
            f"unknown security scheme {unknown[0]!r}: use one of "
            + ", ".join(http.SECURITY_SCHEMES)
        )
    pool = schema_pool(contracts)
    schemas = {name: rebase(schema, DEFS, COMPONENTS) for name, schema in pool.schemas.items()}
    methods = [spec.methods[name] for spec in contracts.services for name in sorted(spec.methods)]
    errors = {type_path(cls): cls for m in methods for cls in m.raises}
    schemas.update(_http_schemas(methods, [errors[k] for k in sorted(errors)]))
    secured = bool(security)
    paths: dict[str, Any] = {}
    for method in methods:
        operation = _call(method, secured, contracts.method_doc(method))
        paths[http.call_path(method.service, method.name)] = {"post": operation}
    for spec in contracts.services:
        for event in (spec.events[n] for n in sorted(spec.events)):
            if event.external:
                paths[http.fire_path(event.service, event.name)] = {"post": _fire(event, secured)}
    paths.update(_routine_paths(secured))
    description = (contracts.description + "\n\n" if contracts.description else "") + (
        "Each `POST /{Service}/{method}` starts a durable routine with the JSON object of its "
        "arguments; the answer is its result when it finishes within `Prefer: wait=N` "
        f"seconds (default {http.DEFAULT_WAIT:g}, at most {http.MAX_WAIT:g}), else "
        f"`202 Accepted` and the routine's URL in `{http.LOCATION}`. Errors are RFC 9457 "
        "problem details; an exception the method declares is a 422 problem of its own."
    )
    document: dict[str, Any] = {
        "openapi": VERSION,
        "info": {
            "title": f"dasync HTTP gateway of {contracts.title}",
            "version": version,
            "description": description,
        },
        "tags": [
            _tag(spec, contracts.service_doc(spec)) for spec in contracts.services if spec.methods
        ]
        + [{"name": "routines", "description": "Routines started over HTTP."}],
        "paths": paths,
        "components": {
            "schemas": {name: schemas[name] for name in sorted(schemas)},
            "parameters": _parameters(),
            "headers": _headers(),
            "securitySchemes": {name: scheme for name, scheme in http.SECURITY_SCHEMES.values()},
        },
    }
    if secured:
        document["security"] = [{http.SECURITY_SCHEMES[s][0]: []} for s in security]
    return document


def _tag(spec: ServiceSpec, doc: str | None) -> dict[str, Any]:
    tag: dict[str, Any] = {"name": spec.name}
    if doc:
        tag["description"] = doc
    if spec.version > 1:  # the contract's name and version, as @dasync.contract declares
        tag["x-dasync-contract"] = {"name": spec.family, "version": spec.version}
    return tag


# --- operations ----------------------------------------------------------------------------


def _call(method: MethodSpec, secured: bool, doc: str | None) -> dict[str, Any]:
    route = next(r for r in http.ROUTES if r.name == "call")
    required = any(not p.has_default for p in method.params)
    operation: dict[str, Any] = {
        "operationId": method.qualname,
        "tags": [method.service],
        "summary": (doc or f"call {method.qualname}").split("\n\n", 1)[0].replace("\n", " "),
    }
    if doc:
        operation["description"] = doc
    operation["parameters"] = [
        {"$ref": "#/components/parameters/Prefer"},
        {"$ref": "#/components/parameters/IdempotencyKey"},
    ]
    operation["requestBody"] = {
        "required": required,
        "content": {http.JSON: {"schema": _ref(arguments_name(method))}},
    }
    started = {
        http.LOCATION: {"$ref": f"#/components/headers/{http.LOCATION}"},
        http.ROUTINE_ID: {"$ref": f"#/components/headers/{http.ROUTINE_ID}"},
        http.PREFERENCE_APPLIED: {"$ref": f"#/components/headers/{http.PREFERENCE_APPLIED}"},
    }
    responses: dict[str, Any] = {
        "200": {
            "description": "The routine finished within the wait: its result.",
            "headers": started,
            "content": {http.JSON: {"schema": _ref(result_name(method))}},
        },
        "202": {
            "description": "The routine is running: poll its URL.",
            "headers": started,
            "content": {http.JSON: {"schema": _ref("http.Accepted")}},
        },
    }
    declared = [_ref(_error_name(cls)) for cls in sorted(method.raises, key=type_path)]
    problems = [_PROBLEMS[k] for k in route.problems if _PROBLEMS[k].listed]
    responses.update(_problem_responses(problems, secured, declared))
    operation["responses"] = responses
    return operation


def _fire(event: EventSpec, secured: bool) -> dict[str, Any]:
    route = next(r for r in http.ROUTES if r.name == "fire")
    responses: dict[str, Any] = {
        "202": {
            "description": "The service will publish the event.",
            "content": {http.JSON: {"schema": _ref("http.Fired")}},
        }
    }
    problems = [_PROBLEMS[k] for k in route.problems if _PROBLEMS[k].listed]
    responses.update(_problem_responses(problems, secured))
    return {
        "operationId": f"{event.topic}.fire",
        "tags": [event.service],
        "summary": f"fire {event.topic}",
        "description": f"{route.summary}. The body is the event's payload; the same "
        f"`{http.IDEMPOTENCY_KEY}` again is the same event (the first payload stands).",
        "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": {"required": True,
                        "content": {http.JSON: {"schema": _ref(event_name(event))}}},
        "responses": responses,
    }  # fmt: skip


def _routine_paths(secured: bool) -> dict[str, Any]:
    by_name = {r.name: r for r in http.ROUTES}
    status, cancel, spec = by_name["status"], by_name["cancel"], by_name["openapi"]
    signal, progress = by_name["signal"], by_name["progress"]
    routine = {"$ref": "#/components/parameters/RoutineId"}
    body = {http.JSON: {"schema": _ref("http.RoutineStatus")}}
    paths: dict[str, Any] = {
        http.ROUTINE_PATH: {
            "parameters": [routine],
            "get": {
                "operationId": "routines.status",
                "tags": ["routines"],
                "summary": status.summary,
                "responses": {
                    "200": {"description": "The routine's status.", "content": body},
                    **_problem_responses([_PROBLEMS[k] for k in status.problems], secured),
                },
            },
            "delete": {
                "operationId": "routines.cancel",
                "tags": ["routines"],
                "summary": cancel.summary,
                "responses": {
                    "202": {"description": "Cancellation requested.", "content": body},
                    **_problem_responses([_PROBLEMS[k] for k in cancel.problems], secured),
                },
            },
        },
        http.SIGNAL_PATH: {
            "parameters": [routine, {"$ref": "#/components/parameters/SignalName"}],
            "post": {
                "operationId": "routines.signal",
                "tags": ["routines"],
                "summary": signal.summary,
                "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
                "requestBody": {
                    "required": True,
                    "content": {http.JSON: {"schema": {"description": "the signal's value"}}},
                },
                "responses": {
                    "202": {
                        "description": "The signal is on its way to the routine.",
                        "content": {http.JSON: {"schema": _ref("http.Signalled")}},
                    },
                    **_problem_responses([_PROBLEMS[k] for k in signal.problems], secured),
                },
            },
        },
        http.PROGRESS_PATH: {
            "parameters": [routine],
            "get": {
                "operationId": "routines.progress",
                "tags": ["routines"],
                "summary": progress.summary,
                "description": "Each update is an event `id: <n>` (the n-th update from 1) "
                "and `data: <the update's JSON>`; a final `event: end` carries the routine's "
                f"status. Reconnect with `{http.LAST_EVENT_ID}: <n>` to get the updates after "
                "the n-th.",
                "parameters": [{"$ref": "#/components/parameters/LastEventId"}],
                "responses": {
                    "200": {
                        "description": "The stream of updates.",
                        "content": {
                            http.EVENT_STREAM: {
                                "schema": {
                                    "description": "one Server-Sent Event",
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                                        "event": {"const": "end"},
                                        "data": {
                                            "type": "string",
                                            "description": "an update's JSON; with `end`, "
                                            "the routine's status (as GET of its URL)",
                                        },
                                    },
                                    "required": ["data"],
                                }
                            }
                        },
                    },
                    **_problem_responses([_PROBLEMS[k] for k in progress.problems], secured),
                },
            },
        },
        spec.path: {
            "get": {
                "operationId": "openapi",
                "tags": ["routines"],
                "summary": spec.summary,
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {http.JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    if secured:
        paths[spec.path]["get"]["security"] = []  # the document itself is public
    return paths


def _problem_responses(
    problems: list[http.Problem], secured: bool, declared: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """``{status: response}`` for ``problems`` (the auth ones when ``secured``), with the
    declared errors' problems among the 422s."""
    every = list(problems)
    if secured:
        every += [_PROBLEMS[k] for k in http.AUTH_PROBLEMS]
    by_status: dict[int, list[dict[str, str]]] = {}
    titles: dict[int, list[str]] = {}
    for problem in every:
        by_status.setdefault(problem.status, []).append(_ref(_problem_name(problem.key)))
        titles.setdefault(problem.status, []).append(problem.title)
    if declared:
        by_status.setdefault(http.DECLARED_ERROR_STATUS, [])[:0] = declared
        titles.setdefault(http.DECLARED_ERROR_STATUS, [])[:0] = ["An error the method declares"]
    responses = {}
    for status in sorted(by_status):
        refs = by_status[status]
        schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
        responses[str(status)] = {
            "description": "; ".join(titles[status]) + ".",
            "content": {http.PROBLEM_JSON: {"schema": schema}},
        }
    return responses


# --- components ----------------------------------------------------------------------------


def _parameters() -> dict[str, Any]:
    return {
        "Prefer": {
            "name": http.PREFER,
            "in": "header",
            "required": False,
            "description": "RFC 7240 preferences: `wait=N` answers with the result if the "
            f"routine finishes within N seconds (default {http.DEFAULT_WAIT:g}, at most "
            f"{http.MAX_WAIT:g}), else 202; `respond-async` answers 202 at once.",
            "schema": {"type": "string"},
            "examples": {"wait": {"value": "wait=5"}, "async": {"value": "respond-async"}},
        },
        "IdempotencyKey": {
            "name": http.IDEMPOTENCY_KEY,
            "in": "header",
            "required": False,
            "description": "A key of the client's choosing: a POST that repeats it gets the "
            "routine the first one started (the same method and arguments, else 422).",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        "SignalName": {
            "name": "name",
            "in": "path",
            "required": True,
            "description": "The signal's name, as the routine waits for it.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 128},
        },
        "LastEventId": {
            "name": http.LAST_EVENT_ID,
            "in": "header",
            "required": False,
            "description": "The last update a reconnecting reader received (its `id`).",
            "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
        },
        "RoutineId": {
            "name": "id",
            "in": "path",
            "required": True,
            "description": f"The routine's id, as in `{http.ROUTINE_ID}`.",
            "schema": {"type": "string"},
        },
    }


def _headers() -> dict[str, Any]:
    return {
        http.LOCATION: {
            "description": f"The routine's URL, `{http.ROUTINE_PATH}`.",
            "schema": {"type": "string", "format": "uri-reference"},
        },
        http.ROUTINE_ID: {
            "description": "The id of the routine the request started or found.",
            "schema": {"type": "string"},
        },
        http.PREFERENCE_APPLIED: {
            "description": "The preferences of `Prefer` that were honoured (RFC 7240).",
            "schema": {"type": "string"},
        },
    }


def _http_schemas(
    methods: list[MethodSpec], errors: list[type[BaseException]]
) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {
        _problem_name(p.key): _problem_schema(p) for p in http.PROBLEMS
    }
    for cls in errors:
        schemas[_error_name(cls)] = _declared_problem(cls)
    schemas["http.Signalled"] = {
        "title": "signalled",
        "description": "A signal sent to a routine.",
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "the routine"},
            "signal": {"type": "string"},
            "signal_id": {"type": "string"},
            "status": {"const": "accepted"},
        },
        "required": ["id", "signal", "signal_id", "status"],
    }
    schemas["http.Fired"] = {
        "title": "fired",
        "description": "A fire request the service has received.",
        "type": "object",
        "properties": {
            "event": {"type": "string", "description": "the topic, Service.event"},
            "fire_id": {"type": "string"},
            "status": {"const": "accepted"},
        },
        "required": ["event", "fire_id", "status"],
    }
    schemas["http.Accepted"] = {
        "title": "accepted",
        "description": "A routine that is still running.",
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "status": {"const": http.Status.RUNNING.value},
            "href": {"type": "string", "format": "uri-reference"},
        },
        "required": ["id", "status", "href"],
    }
    for method in methods:
        schemas[_status_name(method)] = _status_schema(method)
    schemas["http.RoutineStatus"] = (
        {"anyOf": [_ref(_status_name(m)) for m in methods]} if methods else _status_schema(None)
    )
    return schemas


def _status_schema(method: MethodSpec | None) -> dict[str, Any]:
    declared = sorted(method.raises, key=type_path) if method else []
    failed = [_ref(_error_name(cls)) for cls in declared]
    failed += [_ref(_problem_name("routine-failed")), _ref(_problem_name("routine-cancelled"))]
    return {
        "title": f"{method.qualname} routine" if method else "routine",
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "service": {"const": method.service} if method else {"type": "string"},
            "method": {"const": method.name} if method else {"type": "string"},
            "status": {"enum": [s.value for s in http.Status]},
            "result": _ref(result_name(method)) if method else {},
            "error": {"anyOf": failed},
        },
        "required": ["id", "service", "method", "status"],
    }


def _base_problem(type_: dict[str, Any], title: dict[str, Any], status: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "type": type_,
            "title": title,
            "status": {"const": status},
            "detail": {"type": "string"},
            "instance": {"type": "string", "format": "uri-reference"},
        },
        "required": ["type", "title", "status"],
    }


def _exception_members(
    schema: dict[str, Any], exception: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any]:
    described = {
        "exception": exception,
        "message": {"type": "string"},
        "args": {"type": "array", "items": _ref(VALUE)},
        "fields": fields,
    }
    for name, doc in http.EXCEPTION_MEMBERS.items():
        schema["properties"][name] = {**described[name], "description": doc}
    schema["required"] += ["exception", "message"]
    return schema


def _problem_schema(problem: http.Problem) -> dict[str, Any]:
    schema = _base_problem({"const": problem.type}, {"const": problem.title}, problem.status)
    schema = {"title": problem.key, "description": f"Answered when {problem.when}.", **schema}
    schema["properties"].update(problem.members)
    if problem.error:
        any_fields = {"type": "object", "additionalProperties": _ref(VALUE)}
        exception = {"type": "string", "pattern": "^[^:]+:.+$"}
        _exception_members(schema, exception, any_fields)
    return schema


def _declared_problem(cls: type[BaseException]) -> dict[str, Any]:
    """The 422 problem of a declared error: its exception members, its fields typed."""
    path = type_path(cls)
    schema = _base_problem(
        {"const": http.error_problem_type(path)},
        {"const": cls.__qualname__},
        http.DECLARED_ERROR_STATUS,
    )
    schema = {"title": cls.__qualname__, **schema}
    if cls.__doc__:
        schema["description"] = cls.__doc__.strip().split("\n\n", 1)[0]
    fields, required = error_fields(cls)
    typed: dict[str, Any] = {
        "type": "object",
        "properties": {
            name: rebase(tagged_schema(hint, _pool_ref), DEFS, COMPONENTS)
            for name, hint in fields.items()
        },
        "additionalProperties": _ref(VALUE),
    }
    if required:
        typed["required"] = required
    return _exception_members(schema, {"const": path}, typed)


def _pool_ref(name: str) -> dict[str, str]:
    return {"$ref": DEFS + name}
