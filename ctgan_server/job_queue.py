"""The fit queue: first in, first out across all users, with at most ``max_running_jobs`` fits running.

No daemon exists.  The queue is a folder of tickets (``jobs/.queue``), named
so that they sort by the jobs' creation times; a job runs when its ticket is
first in line and it can ``flock`` one of the slot files (``jobs/.slots``).
The kernel frees a slot when its job dies, however it dies, and a dead job's
ticket is removed by the next job that finds it in its way.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from .job_store import POLL_SECONDS, alive, process_start
from .storage import make_private_dir
from .wire import atomic_write_text


class Queue:
    """First in, first out, across all users, with at most ``slots`` jobs running."""

    def __init__(self, data_root: Path, slots: int):
        self.tickets = data_root / "jobs" / ".queue"
        self.slot_dir = data_root / "jobs" / ".slots"
        self.slots = slots
        self.held: int | None = None
        self._slot: Any = None  # the open, locked slot file
        for folder in (data_root / "jobs", self.tickets, self.slot_dir):
            make_private_dir(folder)

    def take_ticket(self, created_at: float, user: str, job_id: str) -> Path:
        ticket = self.tickets / f"{int(created_at * 1e6):020d}-{user}-{job_id}"
        atomic_write_text(ticket, json.dumps({"pid": os.getpid(), "pid_start": process_start(os.getpid())}))
        return ticket

    def wait(self, ticket: Path) -> None:
        """Block until this ticket is first in line and a slot is free; the slot is held until exit."""
        while True:
            if self._first_in_line(ticket):
                for n in range(self.slots):
                    # 0600 like every other file of the server's (`doctor` checks); the lock is on the open file.
                    fh = os.fdopen(os.open(self.slot_dir / f"{n}.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        fh.close()
                        continue
                    self._slot = fh  # kept open: the lock lasts as long as this process
                    self.held = n
                    ticket.unlink(missing_ok=True)
                    return
            time.sleep(POLL_SECONDS)

    def _first_in_line(self, ticket: Path) -> bool:
        for other in sorted(self.tickets.iterdir()):
            if other.name.startswith("."):
                continue  # a ticket still being written
            if other.name >= ticket.name:
                return True
            try:
                owner = json.loads(other.read_text())
            except (OSError, ValueError):
                continue  # gone since the listing
            if alive(owner.get("pid"), owner.get("pid_start")):
                return False
            other.unlink(missing_ok=True)  # a dead job's ticket
        return True
