"""The replay engine: no transport, no injection, no proxies (a test enforces it)."""

from ._context import propagate as propagate
from ._ids import MAX_CALL_DEPTH as MAX_CALL_DEPTH
from ._ids import check_user_id as check_user_id
from ._ids import child_id as child_id
from ._ids import event_id as event_id
from ._ids import handler_id as handler_id
from ._ids import legacy_child_id as legacy_child_id
from ._ids import legacy_event_id as legacy_event_id
from ._ids import owner_of as owner_of
from ._instance import EvictedDuringStep as EvictedDuringStep
from ._instance import RoutineInstance as RoutineInstance
from ._instance import current_instance as current_instance
from ._instance import evicting_instance as evicting_instance
from ._journal import decode_step as decode_step
from ._journal import encode_step as encode_step
from ._model import Call as Call
from ._model import Cancel as Cancel
from ._model import CancelCall as CancelCall
from ._model import Command as Command
from ._model import Complete as Complete
from ._model import Emit as Emit
from ._model import FireTimer as FireTimer
from ._model import Input as Input
from ._model import Postpone as Postpone
from ._model import Progress as Progress
from ._model import Record as Record
from ._model import Resolve as Resolve
from ._model import Signal as Signal
from ._model import Start as Start
from ._model import StartTimer as StartTimer
from ._model import Step as Step
from ._model import StepRecord as StepRecord
from ._model import completion_of as completion_of
from ._model import input_key as input_key

__all__ = [
    "MAX_CALL_DEPTH",
    "Call",
    "Cancel",
    "CancelCall",
    "Command",
    "Complete",
    "Emit",
    "EvictedDuringStep",
    "FireTimer",
    "Input",
    "Postpone",
    "Progress",
    "Record",
    "Resolve",
    "RoutineInstance",
    "Signal",
    "Start",
    "StartTimer",
    "Step",
    "StepRecord",
    "check_user_id",
    "child_id",
    "completion_of",
    "input_key",
    "current_instance",
    "decode_step",
    "event_id",
    "evicting_instance",
    "handler_id",
    "legacy_child_id",
    "owner_of",
    "legacy_event_id",
    "propagate",
]
