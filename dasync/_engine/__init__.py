"""The replay engine: no transport, no injection, no proxies (a test enforces it)."""

from ._instance import RoutineInstance as RoutineInstance
from ._instance import current_instance as current_instance
from ._model import Call as Call
from ._model import Cancel as Cancel
from ._model import CancelCall as CancelCall
from ._model import Command as Command
from ._model import Complete as Complete
from ._model import Emit as Emit
from ._model import FireTimer as FireTimer
from ._model import Input as Input
from ._model import Record as Record
from ._model import Resolve as Resolve
from ._model import Start as Start
from ._model import StartTimer as StartTimer
from ._model import Step as Step
from ._model import StepRecord as StepRecord
from ._model import decode_step as decode_step
from ._model import encode_step as encode_step

__all__ = [
    "Call",
    "Cancel",
    "CancelCall",
    "Command",
    "Complete",
    "Emit",
    "FireTimer",
    "Input",
    "Record",
    "Resolve",
    "RoutineInstance",
    "Start",
    "StartTimer",
    "Step",
    "StepRecord",
    "current_instance",
    "decode_step",
    "encode_step",
]
