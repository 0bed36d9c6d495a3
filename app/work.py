"""Costly calculations as values: what a route hands to the pool, and what can come back.

A `/calculate` whose expression costs more than the serving thread may spend on it
(`app.calculator.INLINE_BUDGET`) is not computed by the route. The route returns a `Job` (the
expression: all a pool worker needs) together with a pure function that turns the job's
`Outcome` into a response (`app.routes.Deferred`). The driver runs the job in the shared process
pool (`app.pool`) in its own idiom and renders whatever outcome arrives.

An outcome is what the calculator itself would give (`Result` or `CalcError`), or one of the two
things only the pool can say:

- `Shed`: the job was refused at once (429 for a client over its share of the queue, 503 when
  the whole pool is saturated), with how long to wait before asking again.
- `Stopped`: the job started but no answer came: its worker ran past the time limit and was
  killed, or died of something else.

This module is pure data: routes import it without learning anything of processes, and the pool
imports it without learning anything of HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from app.calculator import CalcError, Result

__all__ = ["CLIENT_SHARE", "LOST", "SATURATED", "TIMEOUT", "Job", "Outcome", "Shed", "Stopped"]

# Why a job was shed.
CLIENT_SHARE: Final = "client_share"  # the client already has its share queued: 429
SATURATED: Final = "saturated"  # the pool's backlog is full: 503
# Why a started job was stopped.
TIMEOUT: Final = "timeout"  # past the time limit: the worker was killed
LOST: Final = "lost"  # the worker died on its own (killed from outside, out of memory)


@dataclass(frozen=True, slots=True)
class Job:
    """One calculation for a pool worker: `evaluate(expr)` with the full budget."""

    expr: str


@dataclass(frozen=True, slots=True)
class Shed:
    """Refused before it started: answer `status` (429 or 503) with `Retry-After`."""

    reason: Literal["client_share", "saturated"]
    retry_after: int  # whole seconds, at least 1

    @property
    def status(self) -> int:
        return 429 if self.reason == CLIENT_SHARE else 503


@dataclass(frozen=True, slots=True)
class Stopped:
    """Started, but its worker gave no answer: killed at the time limit, or died."""

    reason: Literal["timeout", "lost"]
    limit: float  # the time limit in seconds, for the message


Outcome: TypeAlias = Result | CalcError | Shed | Stopped
