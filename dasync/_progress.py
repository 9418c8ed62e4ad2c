"""Progress: a routine publishes updates that clients read while it runs.

``dasync.progress(value)`` inside a routine journals the update with the current
step, so it leaves only if the step commits, exactly once (a replay issues it
again and finds it in the journal, a crash before the commit drops it with the
step). Clients read the updates from the journal in order, from any offset
(``RoutineHandle.progress(after=n)``), so one that connects late or reconnects
misses nothing and sees nothing twice.
"""

from __future__ import annotations

from typing import Any

from ._codec import encode_value
from ._engine import current_instance
from ._errors import NotInRoutine

__all__ = ["progress"]


def progress(value: Any) -> None:
    """Publish ``value`` (anything an argument can be) as the routine's next update."""
    inst = current_instance()
    if inst is None:
        raise NotInRoutine("dasync.progress() publishes from inside a routine only")
    inst.progress(encode_value(value, what="progress update"))
