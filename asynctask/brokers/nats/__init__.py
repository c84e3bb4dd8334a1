"""The NATS JetStream broker (design notes to be written)."""

from __future__ import annotations

from asynctask.brokers.nats.broker import NatsBroker

__all__ = ["NatsBroker"]
