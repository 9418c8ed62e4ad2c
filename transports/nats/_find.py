"""Finding the running embedded server of a directory, without starting one.

``dasync call``, ``dasync dead-letters`` and ``dasync.connect()`` with no URL talk to
the server a ``dasync run`` of the same directory started (``./.dasync/nats``); a
client never starts a server itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._server import EmbeddedServer, _alive, _answers, _read_info

__all__ = ["DEFAULT_DIRECTORY", "find_embedded"]

DEFAULT_DIRECTORY = Path(".dasync")


def find_embedded(directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> EmbeddedServer | None:
    """The running embedded server of ``directory``, without starting one or taking a lease."""
    home = Path(directory) / "nats"
    info = _read_info(home)
    if info is None or not _alive(info["pid"]) or not _answers(info["port"]):
        return None
    return EmbeddedServer(info["url"], info["pid"], info["port"], False, home)
