"""The AsyncAPI 3.0.0 document of the NATS side of a file's services.

It describes the deployment as its participants see it: every channel is a
real subject, computed by the NATS transport's own naming functions
(``dasync.transports.nats.naming``, namespace included), with a parameter
where a name is only known at run time (a client identity, an inbox id, the
digest ``dasync run`` derives ``main()``'s service name from). For each
service ``S``:

* ``S.client``: ``<root>.S.in.client.{identity}``, where clients send calls and cancels;
* ``S.start.P``: ``<root>.S.start.P.{routine}``, where service ``P`` starts its calls to
  ``S``, one message per routine (``S``'s starts stream keeps one per subject and refuses
  a second; the routine token is ``naming.token(routine_id, 200)``);
* ``S.from.P``: ``<root>.S.in.svc.P``, where service ``P`` sends the rest of what it
  sends ``S``: its cancels if it calls ``S`` (and a call's start when ``S`` has no
  starts stream ``P`` may use), the replies to ``S``'s calls if ``S`` calls it (the
  subject is the sender's proof, docs/security.md);
* ``S.from.P.at``: ``<root>.S.at.{lane}.svc.P``, the same replies to one worker of ``S``;
* ``S.inbox``: ``<root>._inbox.{identity}.{inbox}.S``, where ``S`` replies to clients;
* ``S.event.E``: ``<root>.S.event.E``, the events ``S`` publishes.

Operations say who sends what; a call's ``reply`` names the channel its
replies come back on. Headers are those of ``dasync._runtime._wire``, by its
own constants. Payload schemas are the shared pool (``_schemas``), said in
draft-07 for AsyncAPI's default schema format.
"""

from __future__ import annotations

import re
from typing import Any

from .._contract import MethodSpec, ServiceSpec
from .._event import EventSpec
from .._runtime import _wire as wire
from ..transports.nats import naming
from ._contracts import Contracts
from ._refs import COMPONENTS, rebase, to_draft07
from ._schemas import (
    DEFS,
    SchemaPool,
    arguments_name,
    event_name,
    failure_name,
    result_name,
    schema_pool,
)

__all__ = ["VERSION", "asyncapi_document"]

VERSION = "3.0.0"
_FAILURE = "dasync.Failure"
_MAIN_DIGEST = re.compile(r"(.*)_([0-9a-f]{8})")
_MAIN_PARAM = "mainDigest"
_PLACEHOLDER = "zz{}zz"
"""A valid subject token standing for a parameter while a naming function builds a
subject; replaced by ``{name}`` after."""


def asyncapi_document(
    contracts: Contracts, *, namespace: str = "", version: str = "1.0.0"
) -> dict[str, Any]:
    """The AsyncAPI document of ``contracts`` on NATS, under ``namespace``."""
    naming.check_namespace(namespace)
    pool = schema_pool(contracts)
    builder = _Builder(contracts, namespace, pool)
    builder.build()
    root = naming.work_subject("S", namespace).split(".", 1)[0]
    description = (contracts.description + "\n\n" if contracts.description else "") + (
        f"Every subject starts with `{root}`"
        + (f" (namespace `{namespace}`)" if namespace else "")
        + ". Each service receives on `<root>.<Service>.in.<lane>`, and the lane names the "
        "sender: `client.<identity>` for clients, `svc.<Service>` for another service "
        "(its cancels, or its replies). Another service starts its calls on "
        "`<root>.<Service>.start.<Caller>.<routine>`, one message per routine, where the "
        "caller's token names the sender too. Clients get replies on their inbox, "
        "`<root>._inbox.<identity>.<inbox>.<Service>`. Message bodies are JSON; headers are "
        "dasync's (the transport adds `Nats-Msg-Id` for deduplication)."
    )
    return {
        "asyncapi": VERSION,
        "info": {
            "title": f"dasync services of {contracts.title}",
            "version": version,
            "description": description,
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "{host}",
                "protocol": "nats",
                "description": "A NATS server with JetStream (what 'dasync run --nats' names).",
                "variables": {
                    "host": {
                        "default": "localhost:4222",
                        "description": "host:port of the NATS server",
                    }
                },
            }
        },
        "channels": _sorted(builder.channels),
        "operations": _sorted(builder.operations),
        "components": {
            "messages": _sorted(builder.messages),
            "schemas": {
                name: to_draft07(rebase(schema, DEFS, COMPONENTS))
                for name, schema in pool.schemas.items()
            },
        },
    }


def _sorted(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: mapping[key] for key in sorted(mapping)}


def _template(subject: str, *params: str) -> str:
    """``subject`` with the placeholder of each parameter replaced by ``{name}``."""
    for name in params:
        subject = subject.replace(_PLACEHOLDER.format(name), "{" + name + "}")
    return subject


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": COMPONENTS + name}


def _message_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{name}"}


class _Builder:
    """Collects channels, operations and messages, service by service."""

    def __init__(self, contracts: Contracts, namespace: str, pool: SchemaPool) -> None:
        self.contracts = contracts
        self.namespace = namespace
        self.pool = pool
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.known = {s.name for s in contracts.services}

    # --- participants -------------------------------------------------------------------------

    def _participant(self, name: str) -> tuple[str, str, dict[str, Any]]:
        """``(channel id part, subject token, parameters)`` of a calling service; ``main()``'s
        name ends with a digest of the file's path, so it is a parameter."""
        if name == self.contracts.main:
            match = _MAIN_DIGEST.fullmatch(name)
            if match:
                parameter = {
                    _MAIN_PARAM: {
                        "description": "the first 8 hex digits of the SHA-256 of the absolute "
                        "path of the file whose main() this is ('dasync run' names main's "
                        "service after the file and where it is)",
                    }
                }
                return match[1], f"{match[1]}_{_PLACEHOLDER.format(_MAIN_PARAM)}", parameter
        return name, name, {}

    def _label(self, name: str) -> str:
        return f"main() of {self.contracts.title}" if name == self.contracts.main else name

    def _lane(self, service: str, sender: str) -> tuple[str, str, dict[str, Any]]:
        """``(channel id, address, parameters)`` of what ``sender`` sends to ``service``."""
        ident, token, params = self._participant(sender)
        receiver, receiver_token, receiver_params = self._participant(service)
        address = naming.call_subject(receiver_token, token, self.namespace)
        address = _template(address, *params, *receiver_params)
        return f"{receiver}.from.{ident}", address, {**receiver_params, **params}

    def _worker_lane(self, service: str, sender: str) -> tuple[str, str, dict[str, Any]]:
        """``_lane`` for one worker of ``service``: ``<root>.<service>.at.{lane}.svc.<sender>``."""
        ident, token, params = self._participant(sender)
        receiver, receiver_token, receiver_params = self._participant(service)
        shared = naming.call_subject(receiver_token, token, self.namespace)
        every = f".{naming.LANE_TOKEN}.*."
        address = naming.lane_subject(shared, "*").replace(every, every.replace("*", "{lane}"))
        address = _template(address, *params, *receiver_params)
        lane = {
            "lane": {
                "description": f"a worker's lane (8-32 hex digits): the `{wire.REPLY_AT}` "
                "header of the call"
            }
        }
        return f"{receiver}.from.{ident}.at", address, {**receiver_params, **params, **lane}

    def _start_lane(self, service: str, sender: str) -> tuple[str, str, dict[str, Any]]:
        """``(channel id, address, parameters)`` where ``sender`` starts its calls to
        ``service``: ``<root>.<service>.start.<sender>.{routine}``."""
        ident, token, params = self._participant(sender)
        receiver, receiver_token, receiver_params = self._participant(service)
        routine = _PLACEHOLDER.format("routine")
        address = naming.start_subject(receiver_token, token, routine, self.namespace)
        address = _template(address, *params, *receiver_params, "routine")
        parameter = {
            "routine": {
                "description": f"the id of the routine the call starts (its `{wire.ROUTINE}` "
                "header) made one subject token, `naming.token(routine_id, 200)`: the id "
                "itself if it is 1-200 of `[A-Za-z0-9_-]` not starting with `_`, else its "
                "other characters made `_`, cut to 187, then `-` and the first 12 hex digits "
                "of its SHA-256"
            }
        }
        return f"{receiver}.start.{ident}", address, {**receiver_params, **params, **parameter}

    # --- the document -----------------------------------------------------------------------

    def build(self) -> None:
        for spec in self.contracts.services:
            self._service(spec)
        pairs = sorted(
            {(p, s) for s, callers in self.contracts.callers.items() for p in callers}
            | {(self.contracts.main, s) for s in self.contracts.main_calls}
        )
        for caller, callee in pairs:
            if callee in self.known and caller != callee:
                self._calls_between(caller, self.contracts.service(callee))

    def _service(self, spec: ServiceSpec) -> None:
        methods = [spec.methods[name] for name in sorted(spec.methods)]
        for event in (spec.events[name] for name in sorted(spec.events)):
            self._event(spec, event)
        if not methods:
            return
        for method in methods:
            self._messages_of(method)
        external = [spec.events[n] for n in sorted(spec.events) if spec.events[n].external]
        for event in external:
            self.messages[f"{event.topic}.fire"] = {
                "name": f"{event.topic}.fire",
                "title": f"fire {event.topic}",
                "summary": f"Asks {spec.name} to publish {event.topic} with this payload; "
                "the same fire id again is the same event.",
                "headers": _fire_headers(event),
                "payload": _schema_ref(event_name(event)),
            }
        self.messages[f"{spec.name}.cancel"] = {
            "name": f"{spec.name}.cancel",
            "title": f"cancel a routine of {spec.name}",
            "summary": "Asks a routine to stop; its caller gets CancelledError (or the value "
            "the routine returns after catching it).",
            "headers": _cancel_headers(),
        }
        ns = self.namespace
        identity = _PLACEHOLDER.format("identity")
        inbox = _PLACEHOLDER.format("inbox")
        client = f"{spec.name}.client"
        self.channels[client] = {
            "address": _template(naming.client_subject(spec.name, identity, ns), "identity"),
            "title": f"calls to {spec.name} from clients",
            "description": f"Where a client (dasync.connect, 'dasync call') of identity "
            f"`identity` starts routines of {spec.name} and cancels them.",
            "parameters": {"identity": _identity_parameter()},
            "messages": {
                **{f"{m.qualname}.call": _message_ref(f"{m.qualname}.call") for m in methods},
                f"{spec.name}.cancel": _message_ref(f"{spec.name}.cancel"),
                **{f"{e.topic}.fire": _message_ref(f"{e.topic}.fire") for e in external},
            },
        }
        for event in external:
            self.operations[f"{event.topic}.fire.client"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{client}"},
                "title": f"ask {spec.name} to fire {event.name}",
                "description": f"{event.topic} is an ExternalEvent: a client may ask "
                f"{spec.name} to fire it; {spec.name} checks the payload and publishes it.",
                "messages": [{"$ref": f"#/channels/{client}/messages/{event.topic}.fire"}],
                "tags": [{"name": spec.name}],
            }
        inbox_channel = f"{spec.name}.inbox"
        queue = f"{wire.INBOX_PREFIX}{identity}.{inbox}"
        self.channels[inbox_channel] = {
            "address": _template(naming.inbox_subject(queue, spec.name, ns), "identity", "inbox"),
            "title": f"replies of {spec.name} to clients",
            "description": f"Where {spec.name} publishes the outcome of a routine a client "
            f"started: the inbox `{wire.INBOX_PREFIX}<identity>.<inbox>` the call named in "
            f"its `{wire.REPLY_TO}` header, followed by the replying service.",
            "parameters": {
                "identity": _identity_parameter(),
                "inbox": {"description": "the id of the client's inbox (one per client)"},
            },
            "messages": self._reply_messages(methods),
        }
        for method in methods:
            self.operations[f"{method.qualname}.call.client"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{client}"},
                "title": f"call {method.qualname}",
                **_describe(self.contracts.method_doc(method)),
                "messages": [{"$ref": f"#/channels/{client}/messages/{method.qualname}.call"}],
                "reply": {
                    "channel": {"$ref": f"#/channels/{inbox_channel}"},
                    "messages": [
                        {"$ref": f"#/channels/{inbox_channel}/messages/{method.qualname}.{kind}"}
                        for kind in ("result", "failure")
                    ],
                },
                "tags": [{"name": spec.name}],
            }
        self.operations[f"{spec.name}.cancel.client"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{client}"},
            "title": f"cancel a routine of {spec.name}",
            "messages": [{"$ref": f"#/channels/{client}/messages/{spec.name}.cancel"}],
            "tags": [{"name": spec.name}],
        }
        self.operations[f"{spec.name}.replies.receive"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{inbox_channel}"},
            "title": f"receive the replies of {spec.name} (a client)",
            "messages": [
                {"$ref": f"#/channels/{inbox_channel}/messages/{key}"}
                for key in self._reply_messages(methods)
            ],
            "tags": [{"name": spec.name}],
        }

    def _calls_between(self, caller: str, callee: ServiceSpec | None) -> None:
        """Where ``caller`` starts its calls to ``callee``, the lane it cancels them on, and
        the lane of ``callee``'s replies."""
        if callee is None or not callee.methods:
            return
        methods = [callee.methods[name] for name in sorted(callee.methods)]
        start_id, start_address, start_params = self._start_lane(callee.name, caller)
        starts = self._channel(start_id, start_address, start_params, callee.name, caller)
        who, whom = self._label(caller), self._label(callee.name)
        stream = naming.starts_stream(callee.name, self.namespace)
        starts["title"] = f"the starts of the calls of {who} to {whom}"
        starts["description"] = (
            f"Where {who} starts each routine it calls in {whom}: one message per routine, "
            f"kept in the starts stream of {whom} (`{stream}`, which keeps one message per "
            "subject and refuses a second) until the routine's journal is removed, so a "
            f"call's start exists once. Only {who} may publish here, so a worker knows who "
            "sent each start."
        )
        calls_id, calls_address, calls_params = self._lane(callee.name, caller)
        channel = self._channel(calls_id, calls_address, calls_params, callee.name, caller)
        channel["description"] += (
            f" It carries the cancels of the calls of {who} to {whom}, whose starts come on "
            f"`{start_id}`: a start comes here only when {whom} has no starts stream "
            f"{who} may use (an older release, or permissions without it), or as a resend "
            "of a start the starts stream keeps already."
        )
        for method in methods:
            call = f"{method.qualname}.call"
            starts["messages"][call] = _message_ref(call)
            channel["messages"][call] = _message_ref(call)
        channel["messages"][f"{callee.name}.cancel"] = _message_ref(f"{callee.name}.cancel")
        replies_id, replies_address, replies_params = self._lane(caller, callee.name)
        back = self._channel(replies_id, replies_address, replies_params, caller, callee.name)
        back["messages"].update(self._reply_messages(methods))
        laned_id, laned_address, laned_params = self._worker_lane(caller, callee.name)
        laned = self._channel(laned_id, laned_address, laned_params, caller, callee.name)
        laned["title"] = (
            f"what {self._label(callee.name)} sends to one worker of {self._label(caller)}"
        )
        laned["description"] = (
            f"The replies of {self._label(callee.name)} to a call that named the caller's "
            f"worker lane (`{wire.REPLY_AT}`): the same messages as on `{replies_id}`, "
            f"delivered to the worker of {self._label(caller)} that holds the routine while "
            "it lives (to another once it is gone). Only "
            f"{self._label(callee.name)} may publish here."
        )
        laned["messages"].update(self._reply_messages(methods))
        caller_id = self._participant(caller)[0]
        for method in methods:
            self.operations[f"{method.qualname}.call.from.{caller_id}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{start_id}"},
                "title": f"{self._label(caller)} calls {method.qualname}",
                **_describe(self.contracts.method_doc(method)),
                "messages": [{"$ref": f"#/channels/{start_id}/messages/{method.qualname}.call"}],
                "reply": {
                    "channel": {"$ref": f"#/channels/{replies_id}"},
                    "messages": [
                        {"$ref": f"#/channels/{replies_id}/messages/{method.qualname}.{kind}"}
                        for kind in ("result", "failure")
                    ],
                },
                "tags": [{"name": callee.name}],
            }
        self.operations[f"{callee.name}.cancel.from.{caller_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{calls_id}"},
            "title": f"{self._label(caller)} cancels a routine of {callee.name} it called",
            "messages": [{"$ref": f"#/channels/{calls_id}/messages/{callee.name}.cancel"}],
            "tags": [{"name": callee.name}],
        }

    def _channel(
        self, key: str, address: str, params: dict[str, Any], receiver: str, sender: str
    ) -> dict[str, Any]:
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels[key] = {
                "address": address,
                "title": f"what {self._label(sender)} sends to {self._label(receiver)}",
                "description": f"The lane of {self._label(sender)} into the queue of "
                f"{self._label(receiver)}: only {self._label(sender)} may publish here, so a "
                "worker knows who sent what.",
                "messages": {},
            }
            if params:
                channel["parameters"] = params
        return channel

    def _reply_messages(self, methods: list[MethodSpec]) -> dict[str, dict[str, str]]:
        return {
            f"{m.qualname}.{kind}": _message_ref(f"{m.qualname}.{kind}")
            for m in methods
            for kind in ("result", "failure")
        }

    def _messages_of(self, method: MethodSpec) -> None:
        q = method.qualname
        failure = failure_name(method) if method.raises else _FAILURE
        call: dict[str, Any] = {
            "name": f"{q}.call",
            "title": f"call {q}",
            **_describe(self.contracts.method_doc(method)),
            "headers": _call_headers(method),
            "payload": _schema_ref(arguments_name(method)),
            "correlationId": {
                "location": f"$message.header#/{wire.ROUTINE}",
                "description": f"the id of the routine the call starts; its replies carry it "
                f"in {wire.CALLEE}",
            },
        }
        self.messages[f"{q}.call"] = call
        for kind, ok, payload, summary in (
            ("result", True, result_name(method), f"{q} returned"),
            ("failure", False, failure, f"{q} raised (or was cancelled)"),
        ):
            self.messages[f"{q}.{kind}"] = {
                "name": f"{q}.{kind}",
                "title": f"{q} {kind}",
                "summary": summary,
                "headers": _reply_headers(ok),
                "payload": _schema_ref(payload),
                "correlationId": {
                    "location": f"$message.header#/{wire.CALLEE}",
                    "description": f"the routine that answers: the {wire.ROUTINE} of the call",
                },
            }

    def _event(self, spec: ServiceSpec, event: EventSpec) -> None:
        key = f"{spec.name}.event.{event.name}"
        message = f"{event.topic}.event"
        self.messages[message] = {
            "name": message,
            "title": f"{event.topic} event",
            "headers": _event_headers(event),
            "payload": _schema_ref(event_name(event)),
            "correlationId": {
                "location": f"$message.header#/{wire.EVENT_ID}",
                "description": "the event's id: handled once per subscribing handler",
            },
        }
        subscribers = self.contracts.subscribers.get(event.topic, ())
        self.channels[key] = {
            "address": naming.event_subject(event.topic, self.namespace),
            "title": f"{event.topic} events",
            "description": f"Published by {spec.name} when the step that fired the event "
            "commits; each subscribing handler gets every event once, in a routine of its own.",
            "messages": {message: _message_ref(message)},
        }
        self.operations[f"{event.topic}.publish"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "title": f"{spec.name} fires {event.name}",
            "messages": [{"$ref": f"#/channels/{key}/messages/{message}"}],
            "tags": [{"name": spec.name}],
        }
        self.operations[f"{event.topic}.receive"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "title": f"handle {event.topic}",
            "description": "Subscribed in this file by: " + ", ".join(subscribers)
            if subscribers
            else "No subscriber in this file.",
            "messages": [{"$ref": f"#/channels/{key}/messages/{message}"}],
            "tags": [{"name": spec.name}],
        }


def _describe(doc: str | None) -> dict[str, str]:
    """``summary`` (the first paragraph) and ``description`` of a method's docstring."""
    if not doc:
        return {}
    summary = doc.split("\n\n", 1)[0].replace("\n", " ")
    described = {"summary": summary}
    if summary != doc:
        described["description"] = doc
    return described


def _identity_parameter() -> dict[str, Any]:
    return {
        "description": "the client's identity as one subject token (its NATS user's, "
        "$DASYNC_NATS_IDENTITY)"
    }


def _kind(kind: str) -> dict[str, str]:
    if kind not in wire.KINDS:
        raise ValueError(f"{kind!r} is no message kind of the wire format")
    return {"const": kind}


_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}


def _headers(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    version = {
        "const": wire.WIRE_VERSION,
        "description": "the wire format's version; a worker refuses any other",
    }
    return {
        "type": "object",
        "properties": {wire.VERSION: version, **properties},
        "required": [wire.VERSION, *required],
    }


def _call_headers(method: MethodSpec) -> dict[str, Any]:
    return _headers(
        {
            wire.KIND: _kind("start"),
            wire.ROUTINE: {
                "type": "string",
                "description": "the id of the routine to start; starting one id twice runs it once",
            },
            wire.METHOD: {"const": method.name},
            wire.REPLY_TO: {
                "type": "string",
                "pattern": "^" + re.escape(wire.INBOX_PREFIX),
                "description": "a client's inbox queue, where the reply goes (a service's call "
                "is answered on the caller's own lane)",
            },
            wire.REPLY_ROUTINE: {
                "type": "string",
                "description": f"the caller's routine, repeated in the reply's {wire.ROUTINE}",
            },
            wire.REPLY_SEQ: {**_DIGITS, "description": "the call's sequence number in the caller"},
            wire.REPLY_AT: {
                "type": "string",
                "pattern": "^[0-9a-f]{8,32}$",
                "description": "the calling worker's lane: the reply goes to that worker "
                "(`<root>.<caller>.at.<lane>.svc.<callee>`) rather than the caller's shared lane",
            },
            wire.DEPTH: {**_DIGITS, "description": "how deep in a chain of calls"},
            wire.CONTEXT: {
                "type": "string",
                "description": "JSON of the context variables that travel with calls",
            },
        },
        [wire.KIND, wire.ROUTINE, wire.METHOD],
    )


def _reply_headers(ok: bool) -> dict[str, Any]:
    return _headers(
        {
            wire.KIND: _kind("reply"),
            wire.ROUTINE: {"type": "string", "description": "the caller's routine"},
            wire.SEQ: {**_DIGITS, "description": "the call's sequence number in the caller"},
            wire.OK: {"const": "1" if ok else "0"},
            wire.CALLEE: {"type": "string", "description": "the routine that answers"},
        },
        [wire.KIND, wire.ROUTINE, wire.OK, wire.CALLEE],
    )


def _cancel_headers() -> dict[str, Any]:
    return _headers(
        {
            wire.KIND: _kind("cancel"),
            wire.ROUTINE: {"type": "string", "description": "the routine to cancel"},
            wire.CANCEL_ID: {
                "type": "string",
                "description": "this cancel's own id (a routine can be cancelled again)",
            },
        },
        [wire.KIND, wire.ROUTINE, wire.CANCEL_ID],
    )


def _fire_headers(event: EventSpec) -> dict[str, Any]:
    return _headers(
        {
            wire.KIND: _kind("fire"),
            wire.ROUTINE: {
                "type": "string",
                "description": "the fire's id; firing one id twice publishes one event",
            },
            wire.METHOD: {"const": event.name},
        },
        [wire.KIND, wire.ROUTINE, wire.METHOD],
    )


def _event_headers(event: EventSpec) -> dict[str, Any]:
    properties: dict[str, Any] = {
        wire.EVENT: {"const": event.topic},
        wire.EVENT_ID: {"type": "string", "description": "the event's id"},
    }
    if event.external:
        properties[wire.FIRED_BY] = {
            "type": "string",
            "description": "who asked for an event fired from outside (kind:name), as the "
            "server vouched for the sender",
        }
    return _headers(properties, [wire.EVENT, wire.EVENT_ID])
