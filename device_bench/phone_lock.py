"""One benchmark per phone at a time: a lock on the phone itself, shared by every host and process.

Two mnbench processes (two CI jobs, two people, two hosts behind one adb server or two) benchmarking one phone
at once corrupt each other's timings, so a session holds the phone's lock from before it installs the binary
until its clean-up is done. The lock is a folder made with ``mkdir`` (atomic: exactly one of two concurrent
``mkdir`` succeeds) at :data:`LOCK_DIR`, holding a ``holder`` file (host, pid, run folder, a random token and
the device time it was taken). The holder touches that file before each run (its mtime is the heartbeat).

A waiting process polls until ``wait_s`` passes, then gives up with :class:`~device_bench.errors.DeviceBusy`
("busy (held by HOST pid N since T)"). It breaks the lock, and says so, when the holder is gone: its
heartbeat is older than the holder's ``stale_after_s`` (longer than a run may take with its settings, written
in the holder file; the waiter's own when absent) by the device's clock, or it is a process on this host that
no longer exists. Breaking renames the folder only while the holder file still
names the token that was judged stale, so a holder that just renewed or a lock someone else just took is
left alone.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from .errors import CommandFailed, DeviceBusy
from .transport import Transport, join, quote

logger = logging.getLogger(__name__)

LOCK_DIR = "/data/local/tmp/mnbench/lock"
POLL_S = 1.0
_ACQUIRED, _BUSY = "MNBENCH_LOCK_ACQUIRED", "MNBENCH_LOCK_BUSY"


@dataclass(frozen=True)
class Holder:
    """Who holds a phone's lock, as its ``holder`` file says."""

    host: str = "?"
    pid: int = 0
    token: str = ""
    run: str = ""
    since_s: int | None = None      # device clock, seconds since the epoch
    stale_after_s: float | None = None   # the holder's promise: it renews the lock at least this often

    def describe(self) -> str:
        """``held by HOST pid N since 2026-11-30T21:00:00Z``."""
        since = ("?" if self.since_s is None else datetime.datetime.fromtimestamp(
            self.since_s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return f"held by {self.host} pid {self.pid} since {since}"

    def lines(self) -> list[str]:
        lines = [f"host={self.host}", f"pid={self.pid}", f"token={self.token}", f"run={self.run}"]
        return lines + ([f"stale_after={self.stale_after_s:.3f}"] if self.stale_after_s is not None else [])

    def is_gone_here(self) -> bool:
        """Whether the holder is a process of this host that no longer exists."""
        if self.host != this_host() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def this_host() -> str:
    """This host's name as lock files record it (printable, no spaces)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", socket.gethostname()) or "unknown-host"


def parse_holder(text: str) -> Holder:
    """The ``key=value`` lines of a holder file; unknown or broken lines are ignored."""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    since, pid, stale = fields.get("since", ""), fields.get("pid", ""), fields.get("stale_after", "")
    return Holder(host=fields.get("host", "?") or "?", pid=int(pid) if pid.isdigit() else 0,
                  token=fields.get("token", ""), run=fields.get("run", ""),
                  since_s=int(since) if since.isdigit() else None,
                  stale_after_s=float(stale) if stale.replace(".", "", 1).isdigit() else None)


class PhoneLock:
    """The lock of one phone, taken through ``transport``.

    Args:
        transport: the phone's connection.
        run_folder: the holder's per-run device folder (recorded, for whoever finds the lock stale).
        wait_s: how long :meth:`acquire` waits for a busy phone.
        stale_after_s: a heartbeat older than this means the holder is gone.
        timeout_s: limit for each device command.
    """

    def __init__(self, transport: Transport, run_folder: str, wait_s: float, stale_after_s: float,
                 timeout_s: float) -> None:
        self.transport, self.wait_s, self.stale_after_s, self.timeout_s = (
            transport, wait_s, stale_after_s, timeout_s)
        self.holder = Holder(this_host(), os.getpid(), secrets.token_hex(8), run_folder, None, stale_after_s)
        self.held = False
        self.notes: list[str] = []   # what happened on the way (stale locks broken), for the results

    def acquire(self, stop: threading.Event | None = None) -> None:
        """Take the lock, waiting up to ``wait_s`` (less if ``stop`` is set).

        Raises:
            DeviceBusy: still held by a live holder after ``wait_s``, or stopped while waiting.
            DeviceError: the connection failed.
        """
        deadline = time.monotonic() + self.wait_s
        while True:
            other, age_s = self._try()
            if other is None:
                self.held = True
                return
            promise_s = other.stale_after_s or self.stale_after_s   # the holder's own settings, if it said
            if other.is_gone_here() or (age_s is not None and age_s > promise_s):
                why = ("its process no longer exists" if other.is_gone_here()
                       else f"no heartbeat for {age_s} s, more than {promise_s:g} s")
                if self._break(other):
                    note = f"broke a stale lock ({other.describe()}: {why})"
                    logger.warning("%s", note)
                    self.notes.append(note)
                continue
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or (stop is not None and stop.is_set()):
                raise DeviceBusy(f"busy ({other.describe()}; waited {self.wait_s:g} s, see --lock-wait)")
            if stop is not None:
                stop.wait(min(POLL_S, remaining_s))
            else:
                time.sleep(min(POLL_S, remaining_s))

    def heartbeat(self) -> bool:
        """Renew the heartbeat; False when the lock is no longer ours (someone broke it)."""
        if not self.held:
            return False
        completed = self.transport.shell(f"{self._ours()} && touch {quote(LOCK_DIR + '/holder')}",
                                         self.timeout_s)
        self.held = completed.ok
        return self.held

    def release(self) -> None:
        """Remove the lock if it is still ours; errors are logged, not raised (this runs on every exit)."""
        if not self.held:
            return
        self.held = False
        try:
            self.transport.shell(f"{self._ours()} && rm -rf {quote(LOCK_DIR)}; true", self.timeout_s)
        except Exception as error:  # noqa: BLE001 - never mask the error that ended the session
            logger.warning("could not release the phone's lock %s: %s (it goes stale after %g s)", LOCK_DIR,
                           error, self.stale_after_s)

    # ------------------------------------------------------------------------------------------------
    def _ours(self, token: str | None = None) -> str:
        """A shell test: the holder file names ``token`` (default: ours)."""
        line = "token=" + (token or self.holder.token)
        return f"grep -qx {quote(line)} {quote(LOCK_DIR + '/holder')} 2>/dev/null"

    def _try(self) -> tuple[Holder | None, int | None]:
        """One try: ``(None, None)`` when taken, else the holder and its heartbeat's age (device clock)."""
        lock, holder = quote(LOCK_DIR), quote(f"{LOCK_DIR}/holder")
        lines = " ".join(quote(line) for line in self.holder.lines())
        command = (f"mkdir -p {quote(os.path.dirname(LOCK_DIR))} && if mkdir {lock} 2>/dev/null; then "
                   f"printf '%s\\n' {lines} \"since=$(date +%s)\" > {holder} && echo {_ACQUIRED}; else "
                   f"echo {_BUSY}; echo \"now=$(date +%s)\"; "
                   f"echo \"beat=$(stat -c %Y {holder} 2>/dev/null || stat -c %Y {lock} 2>/dev/null)\"; "
                   f"cat {holder} 2>/dev/null; true; fi")
        completed = self.transport.shell(command, self.timeout_s)
        output = completed.stdout
        if completed.ok and output.startswith(_ACQUIRED):
            return None, None
        if not completed.ok or not output.startswith(_BUSY):
            raise CommandFailed(command, completed.returncode, completed.stderr or completed.stdout)
        fields = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
        now, beat = fields.get("now", ""), fields.get("beat", "")
        age_s = int(now) - int(beat) if now.isdigit() and beat.isdigit() else None
        return parse_holder(output), age_s

    def _break(self, stale: Holder) -> bool:
        """Move the stale lock away if its holder file still names the stale token; True when moved."""
        lock, holder = quote(LOCK_DIR), quote(f"{LOCK_DIR}/holder")
        aside = quote(f"{LOCK_DIR}.stale.{self.holder.token}")
        check = self._ours(stale.token) if stale.token else f"[ ! -e {holder} ]"
        completed = self.transport.shell(f"{check} && mv {lock} {aside} && rm -rf {aside}", self.timeout_s)
        return completed.ok


def remove_stale_run_folders(transport: Transport, root: str, prefix: str, keep: str,
                             timeout_s: float) -> list[str]:
    """Remove ``root/prefix*`` folders other than ``keep`` (left by dead runs); returns those removed.

    Only safe while holding the phone's lock: then no other mnbench process is using any of them. A
    benchmark process still running in one of them is killed first.

    Raises:
        DeviceError: the connection failed.
    """
    pattern = f"{root}/{prefix}"
    command = (f"for d in {quote(pattern)}*; do [ -d \"$d\" ] && [ \"$d\" != {quote(keep)} ] || continue; "
               f"pkill -KILL -f \"[-]-graph=$d/\" 2>/dev/null; rm -rf \"$d\" && echo \"$d\"; done; true")
    completed = transport.shell(command, timeout_s)
    removed = [line.strip() for line in completed.stdout.splitlines() if line.strip().startswith(pattern)]
    if removed:
        logger.warning("removed run folders left on the phone by earlier runs that died: %s", join(removed))
    return removed
