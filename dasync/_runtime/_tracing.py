"""OpenTelemetry tracing of routines: the only module that speaks the OpenTelemetry API.

One CONSUMER span per activation (one delivery that ran the routine's code) and one
PRODUCER span per call, reply or event sent, named and attributed after the
OpenTelemetry messaging semantic conventions. The W3C trace context travels in
message headers (through the global propagator) and is journaled with the
routine's start, so every later activation, on any worker and after any crash,
is a child of the same parent: a run of hours is one trace of short spans, none
held open across awaits. Replays are not activations and emit nothing.

With no tracer provider configured (OpenTelemetry's global default) ``enabled()``
is false and the worker skips all of this: one check per delivery.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = [
    "Activation",
    "configure",
    "enabled",
    "inject_current",
    "journal_fields",
    "start_activation",
    "trace_carrier",
]

SYSTEM = "nats"
"""``messaging.system``: the messages go over NATS (the memory transport stands in for it)."""

# attribute names: the messaging semantic conventions, then dasync's own
MESSAGING_SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
CONSUMER_GROUP = "messaging.consumer.group.name"
MESSAGE_ID = "messaging.message.id"
TEMPORARY = "messaging.destination.temporary"
BODY_SIZE = "messaging.message.body.size"
ROUTINE_ID = "dasync.routine.id"
SERVICE = "dasync.service"
METHOD = "dasync.method"
STEP = "dasync.step"
INPUT = "dasync.input"
"""What the activation consumed: start, reply, timer, cancel, retry, event."""
ATTEMPT = "dasync.delivery.attempt"
"""The transport's delivery count (1: first delivery); no messaging convention has one."""
ERROR_TYPE = "error.type"

TRACER_NAME = "dasync"

_NO_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


_UNKNOWN = object()
_FROM_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
"""A provider named in the environment is loaded by the API on first use."""


def enabled() -> bool:
    """Whether a tracer provider was configured (``trace.set_tracer_provider``).

    Asked several times per step: with no provider set (the API's global still ``None``)
    and none named in the environment, it answers without ``get_tracer_provider``, which
    reads ``os.environ`` on every call."""
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _FROM_ENVIRONMENT:
        return False
    return not isinstance(trace.get_tracer_provider(), _NO_PROVIDERS)


_cached: tuple[object, trace.Tracer] | None = None


def _tracer() -> trace.Tracer:
    """dasync's tracer from the current global provider (kept while the provider is)."""
    global _cached
    provider = trace.get_tracer_provider()
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer(TRACER_NAME))
    return _cached[1]


class _HeaderGetter(Getter[Mapping[str, str]]):
    """Headers as NATS gives them: a field is found whatever its case."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            for name, item in carrier.items():
                if name.lower() == lowered:
                    value = item
                    break
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def _extract(carrier: Mapping[str, str]) -> otel_context.Context | None:
    """The context ``carrier`` propagates, or None when it holds no valid span context."""
    if not carrier:
        return None
    ctx = propagate.extract(carrier, getter=_GETTER)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


_MISSING = object()
_journaled: OrderedDict[tuple[object, ...], otel_context.Context | None] = OrderedDict()
"""Contexts of journaled trace fields, by their values: a routine's every activation has
the same parent, so it is parsed once, not once per step."""


def _journaled_context(meta: Mapping[str, str]) -> otel_context.Context | None:
    textmap = propagate.get_global_textmap()
    values = tuple(meta.get(name) for name in _fields(textmap))
    if not any(values):
        return None
    key = (id(textmap), *values)
    found = _journaled.get(key, _MISSING)
    if found is _MISSING:
        found = _journaled[key] = _extract(meta)
        if len(_journaled) > 4096:
            _journaled.popitem(last=False)
    return found  # type: ignore[return-value]


_textmap_fields: tuple[object, tuple[str, ...]] | None = None


def _fields(textmap: object) -> tuple[str, ...]:
    """The header names the global propagator reads (a composite builds them anew)."""
    global _textmap_fields
    if _textmap_fields is None or _textmap_fields[0] is not textmap:
        _textmap_fields = (textmap, tuple(sorted(propagate.get_global_textmap().fields)))
    return _textmap_fields[1]


def journal_fields(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace fields of a start's headers, to journal in its meta (``traceparent``,
    ``tracestate``...: whatever the global propagator reads)."""
    fields: dict[str, str] = {}
    for name in _fields(propagate.get_global_textmap()):
        found = _GETTER.get(headers, name)
        if found:
            fields[name] = found[0]
    return fields


def trace_carrier(meta: Mapping[str, str]) -> dict[str, str]:
    """The journaled trace fields of a routine (its start meta), to put on a message
    re-sent from the journal: the re-send has no span of its own."""
    return {name: meta[name] for name in _fields(propagate.get_global_textmap()) if name in meta}


def inject_current(headers: MutableMapping[str, str]) -> None:
    """Put the caller's current trace context (a client's start) in ``headers``."""
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)


class Activation:
    """The CONSUMER span of one activation, and the PRODUCER spans of what it sends."""

    __slots__ = ("_attrs", "span", "_ctx")

    def __init__(self, span: Span, attrs: dict[str, Any]) -> None:
        self.span = span
        self._ctx = trace.set_span_in_context(span)
        self._attrs = {k: attrs[k] for k in (ROUTINE_ID, SERVICE) if k in attrs}

    def journal(self, meta: MutableMapping[str, str]) -> None:
        """A routine started with no trace context: its later activations join this span's
        trace, so the span's context is journaled as the routine's parent."""
        propagate.inject(meta, context=self._ctx)

    def step(self, index: int) -> None:
        self.span.set_attribute(STEP, index)

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self.span.add_event(name, dict(attributes or {}))

    def fail(self, exc: BaseException, *, dead_letter: str = "") -> None:
        """The delivery failed in the worker (not in the routine: that is a result)."""
        if dead_letter:
            self.span.add_event("dasync.dead_letter", {"dasync.reason": dead_letter[:500]})
        self.span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))

    def routine_failed(self, error: str) -> None:
        """The routine ended with an exception (delivered to its caller as its result)."""
        self.span.set_attribute(ERROR_TYPE, error.partition(":")[0] or "Exception")
        self.span.set_status(Status(StatusCode.ERROR, error[:500]))

    def end(self) -> None:
        self.span.end()

    @contextmanager
    def sending(
        self,
        destination: str,
        headers: MutableMapping[str, str],
        msg_id: str,
        *,
        operation: str = "send",
        attributes: Mapping[str, Any] | None = None,
        temporary: str = "",
    ) -> Iterator[None]:
        """A PRODUCER span around one send; its context goes into ``headers``.

        ``temporary``: the destination is a client's inbox, named by this low-cardinality
        template in the span's name (the conventions' ``messaging.destination.temporary``).
        """
        attrs: dict[str, Any] = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_TYPE: "send",
            OPERATION_NAME: operation,
            DESTINATION: destination,
            MESSAGE_ID: msg_id,
            **self._attrs,
        }
        if attributes:
            attrs.update(attributes)
        if temporary:
            attrs[TEMPORARY] = True
        span = _tracer().start_span(
            f"{operation} {temporary or destination}",
            context=self._ctx,
            kind=SpanKind.PRODUCER,
            attributes=attrs,
        )
        # never made current: nothing else runs inside a send
        propagate.inject(headers, context=trace.set_span_in_context(span))
        try:
            yield
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
            raise
        finally:
            span.end()


def start_activation(
    service: str,
    method: str,
    routine_id: str,
    *,
    kind: str,
    msg_id: str,
    attempt: int,
    journaled: Mapping[str, str],
    headers: Mapping[str, str],
) -> Activation:
    """Start the CONSUMER span of an activation.

    Its parent is the routine's journaled context (the call that started it), so every
    activation of a routine is a sibling under that call wherever it runs; the message
    that woke it (a reply, say) is linked, as the conventions do for a message that
    is not the span's parent.
    """
    parent = _journaled_context(journaled)
    linked = parent is not None and kind != "start"  # a start's message is its parent
    if parent is None:  # journaled before tracing was on: the message's context, if any
        parent = _extract(headers)
    attrs: dict[str, Any] = {
        MESSAGING_SYSTEM: SYSTEM,
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
        DESTINATION: service,
        CONSUMER_GROUP: service,
        MESSAGE_ID: msg_id,
        ROUTINE_ID: routine_id,
        SERVICE: service,
        METHOD: method,
        INPUT: kind,
        ATTEMPT: attempt,
    }
    span = _tracer().start_span(
        f"process {service}",
        # no parent anywhere: a root, not a child of whatever is current in the worker
        context=parent if parent is not None else otel_context.Context(),
        kind=SpanKind.CONSUMER,
        attributes=attrs,
    )
    if linked and span.is_recording():  # parsed only for a span that is kept
        woke = _extract(headers)
        if woke is not None:
            span.add_link(trace.get_current_span(woke).get_span_context())
    if attempt > 1:
        span.add_event("dasync.redelivered", {ATTEMPT: attempt})
    return Activation(span, attrs)


def configure(kind: str, service_name: str) -> None:
    """``dasync run --trace console|otlp``: install an SDK tracer provider (and, for
    ``otlp``, a meter provider) that exports there; the OTLP endpoint and headers come
    from the standard ``OTEL_EXPORTER_OTLP_*`` variables, which the exporter reads."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    resource = Resource.create({SERVICE_NAME: service_name})
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise RuntimeError(
                "--trace otlp needs the OTLP exporter: pip install 'dasync[otlp]'"
            ) from None
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        exporter = OTLPSpanExporter()
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    else:
        raise ValueError(f"unknown trace exporter {kind!r}: console or otlp")
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def shutdown() -> None:
    """Flush what ``configure`` set up (at exit: the batch processor holds the last spans)."""
    provider: Any = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
    from opentelemetry import metrics

    meters: Any = metrics.get_meter_provider()
    if hasattr(meters, "shutdown"):
        meters.shutdown()
