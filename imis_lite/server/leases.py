"""Leases: which client holds which session, and when an abandoned one is given back.

A client claims a lease and sends its token with every request. A lease ends when released, when its client
stops showing signs of life for ``liveness_s`` (heartbeats count), or when its user does nothing real for
``idle_s`` (heartbeats do not count), so a crashed viewer cannot hold one of ``max_sessions`` forever.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

State = TypeVar("State")


class LeaseError(Exception):
    """No such lease (expired, released, or never issued)."""


class CapacityError(Exception):
    """Every session is taken."""


@dataclass
class Lease(Generic[State]):
    state: State
    lock: threading.Lock = field(default_factory=threading.Lock)  # one request of a client at a time
    active_at: float = field(default_factory=time.monotonic)
    seen_at: float = field(default_factory=time.monotonic)


class Leases(Generic[State]):
    def __init__(self, make_state: Callable[[], State], max_sessions: int, idle_s: float, liveness_s: float) -> None:
        self._make_state = make_state
        self.max_sessions, self.idle_s, self.liveness_s = max_sessions, idle_s, liveness_s
        self._leases: dict[str, Lease[State]] = {}
        self._lock = threading.Lock()

    def claim(self) -> str:
        self.sweep()
        with self._lock:
            if len(self._leases) >= self.max_sessions:
                raise CapacityError(f"server is at capacity ({self.max_sessions} sessions)")
            token = secrets.token_urlsafe(24)
            self._leases[token] = Lease(self._make_state())
            return token

    def get(self, token: str | None, active: bool = True) -> Lease[State]:
        """The lease of ``token``; ``active`` marks real use (postpones the idle timeout), else only liveness."""
        self.sweep()
        with self._lock:
            lease = self._leases.get(token or "")
        if lease is None:
            raise LeaseError("lease expired or unknown: claim a new one")
        now = time.monotonic()
        lease.seen_at = now
        if active:
            lease.active_at = now
        return lease

    def remaining_s(self, lease: Lease[State]) -> float:
        return max(0.0, self.idle_s - (time.monotonic() - lease.active_at))

    def release(self, token: str | None) -> bool:
        with self._lock:
            return self._leases.pop(token or "", None) is not None

    def sweep(self) -> int:
        """End the leases whose client went quiet or idle; returns how many."""
        now = time.monotonic()
        with self._lock:
            ended = [token for token, lease in self._leases.items()
                     if now - lease.seen_at > self.liveness_s or now - lease.active_at > self.idle_s]
            for token in ended:
                del self._leases[token]
        return len(ended)

    def __len__(self) -> int:
        return len(self._leases)
