"""OpenTelemetry metrics of a worker: what operators watch on a dashboard.

Instruments come from the global meter provider (a no-op until the application, or
``dasync run --trace otlp``, sets one), so a worker always records and the cost
without a provider is a few no-op calls per step. Counts are taken where a step is
committed, once per step (a redelivery that finds it committed counts nothing), and
summed across workers by the backend: ``dasync.calls.in_flight`` goes up in the
worker that committed a call and down in whichever committed its reply.

Consumer lag (``dasync.consumer.lag``) is a gauge of what each consumer a worker
pulls from has stored and not yet delivered (JetStream's ``num_pending``). Asking the
server costs a request per consumer, so the worker samples it every
``LAG_INTERVAL`` seconds off the message path (``Worker``) and the gauge reports the
last sample; each worker reports the consumers it pulls from, which its service's
other workers share, so a dashboard takes the maximum per consumer, not the sum.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .._engine import Call, Command, Complete, Postpone, Resolve, StepRecord

__all__ = ["WorkerMetrics"]

SERVICE = "dasync.service"
METHOD = "dasync.method"
TARGET = "dasync.target.service"
OUTCOME = "dasync.outcome"
CONSUMER = "messaging.consumer.group.name"
"""The consumer a lag sample is of (the OpenTelemetry messaging convention's name)."""

LAG_INTERVAL = 15.0
"""Seconds between two samples of consumer lag."""


class WorkerMetrics:
    """The instruments, and what each committed step moves."""

    def __init__(self, provider: metrics.MeterProvider | None = None) -> None:
        """``provider``: the global one unless given (a proxy until one is set, whose
        instruments then start recording)."""
        meter = (provider or metrics.get_meter_provider()).get_meter("dasync")
        self.started = meter.create_counter(
            "dasync.routines.started", unit="{routine}", description="Routines started"
        )
        self.completed = meter.create_counter(
            "dasync.routines.completed", unit="{routine}", description="Routines that returned"
        )
        self.failed = meter.create_counter(
            "dasync.routines.failed",
            unit="{routine}",
            description="Routines that raised (their caller got the exception)",
        )
        self.step_duration = meter.create_histogram(
            "dasync.step.duration",
            unit="s",
            description="One activation: the routine's code, the journal write and the sends",
        )
        self.in_flight = meter.create_up_down_counter(
            "dasync.calls.in_flight",
            unit="{call}",
            description="Durable calls sent and not yet answered",
        )
        self.retries = meter.create_counter(
            "dasync.retries", unit="{retry}", description="Attempts retried by a retry policy"
        )
        self.dead_letters = meter.create_counter(
            "dasync.dead_letters",
            unit="{message}",
            description="Messages set aside (the routine's caller was told, or it is parked)",
        )
        self.lag: dict[tuple[str, str], int] = {}
        """(service, consumer) -> messages not yet delivered, at the last sample."""
        meter.create_observable_gauge(
            "dasync.consumer.lag",
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Messages stored for a consumer and not yet delivered (sampled)",
        )
        self.parked = meter.create_counter(
            "dasync.routines.parked",
            unit="{routine}",
            description="Routines stopped until their dead letter is retried (divergence)",
        )

    def _observe_lag(self, options: CallbackOptions) -> list[Observation]:
        return [
            Observation(n, {SERVICE: service, CONSUMER: consumer})
            for (service, consumer), n in list(self.lag.items())
        ]

    def step(
        self, service: str, method: str, index: int, record: StepRecord, seconds: float
    ) -> None:
        """A step was committed by this worker after ``seconds`` of work."""
        attrs = {SERVICE: service, METHOD: method}
        self.step_duration.record(seconds, attrs)
        if index == 0:
            self.started.add(1, attrs)
        if isinstance(record.input, Resolve):
            self.in_flight.add(-1, {SERVICE: service})
        self._commands(service, attrs, record.commands)

    def _commands(self, service: str, attrs: dict[str, str], commands: Sequence[Command]) -> None:
        for command in commands:
            if isinstance(command, Call):
                self.in_flight.add(1, {SERVICE: service})
            elif isinstance(command, Complete):
                (self.completed if command.ok else self.failed).add(1, attrs)
            elif isinstance(command, Postpone):
                self.retries.add(1, attrs)

    def set_aside(self, service: str, *, told: bool, outcome: str) -> None:
        self.dead_letters.add(1, {SERVICE: service, OUTCOME: outcome})
        if not told:
            self.parked.add(1, {SERVICE: service})
