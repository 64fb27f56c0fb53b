"""Watch channels and watch sets: how blocking queries learn that data they read has changed.

A :class:`WatchChannel` stands for "this piece of data" (a key in an index, a prefix, a whole
table). Writers fire it once; firing removes it from its registry, so the next reader gets a new
channel (like closing a Go channel). Readers collect channels in a :class:`WatchSet` and wait on
it with a timeout driven by an injected ``IReactorTime``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime


class WatchChannel:
    """One-shot notification: fired at most once, then discarded by its registry."""

    __slots__ = ("_key", "_registry", "_subscribers", "fired")

    def __init__(self, registry: ChannelRegistry | None = None, key: Hashable = None) -> None:
        self._registry = registry
        self._key = key
        self._subscribers: dict[int, Callable[[], None]] = {}
        self.fired = False

    def subscribe(self, token: int, callback: Callable[[], None]) -> None:
        if self.fired:
            callback()
            return
        self._subscribers[token] = callback

    def unsubscribe(self, token: int) -> None:
        self._subscribers.pop(token, None)
        if not self._subscribers and self._registry is not None and not self.fired:
            self._registry.discard(self._key, self)

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        subscribers, self._subscribers = self._subscribers, {}
        for callback in subscribers.values():
            callback()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


class ChannelRegistry:
    """Channels by key; a writer pops and fires the channel of every key it touches."""

    __slots__ = ("_channels",)

    def __init__(self) -> None:
        self._channels: dict[Hashable, WatchChannel] = {}

    def get(self, key: Hashable) -> WatchChannel:
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = WatchChannel(self, key)
        return channel

    def pop(self, key: Hashable) -> WatchChannel | None:
        return self._channels.pop(key, None)

    def discard(self, key: Hashable, channel: WatchChannel) -> None:
        if self._channels.get(key) is channel:
            del self._channels[key]

    def pop_all(self) -> list[WatchChannel]:
        channels = list(self._channels.values())
        self._channels.clear()
        return channels

    def __len__(self) -> int:
        return len(self._channels)


class WatchSet:
    """The channels one query read from; :meth:`wait` fires when any of them does."""

    __slots__ = ("_channels", "_deferred", "_timer")
    _next_token = 0

    def __init__(self) -> None:
        self._channels: list[WatchChannel] = []
        self._deferred: Deferred[bool] | None = None
        self._timer: IDelayedCall | None = None

    def add(self, channel: WatchChannel) -> None:
        self._channels.append(channel)

    def __len__(self) -> int:
        return len(self._channels)

    def wait(self, clock: IReactorTime, timeout: float) -> Deferred[bool]:
        """Fire with True when a channel fires, False when ``timeout`` seconds pass first."""
        if self._deferred is not None:
            raise RuntimeError("WatchSet.wait called twice")
        token = WatchSet._next_token = WatchSet._next_token + 1

        def cancel(_: Deferred[bool]) -> None:
            self._finish(token)

        d: Deferred[bool] = Deferred(cancel)
        self._deferred = d

        def fired() -> None:
            self._resolve(token, True)

        def expired() -> None:
            self._timer = None
            self._resolve(token, False)

        for channel in self._channels:
            channel.subscribe(token, fired)
            if self._deferred is None:
                return d
        if self._deferred is not None:
            self._timer = clock.callLater(max(timeout, 0.0), expired)
        return d

    def _resolve(self, token: int, result: bool) -> None:
        d = self._deferred
        if d is None:
            return
        self._finish(token)
        d.callback(result)

    def _finish(self, token: int) -> None:
        self._deferred = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.close(token)

    def close(self, token: int = 0) -> None:
        """Stop watching: drop subscriptions and channels nobody else watches."""
        for channel in self._channels:
            channel.unsubscribe(token)
        self._channels = []


def fire_all(channels: list[WatchChannel] | Any) -> None:
    """Fire every channel in ``channels`` (after a write has completed)."""
    for channel in channels:
        channel.fire()
