# -*- test-case-name: tests.unit.state -*-
"""Watch channels and watch sets: how blocking queries learn that data they read has changed.

A :class:`WatchChannel` stands for "this piece of data" (a key in an index, a prefix, a whole
table). Writers fire it once; firing removes it from its registry, so the next reader gets a new
channel (like closing a Go channel). Readers collect channels in a :class:`WatchSet` and
:meth:`~WatchSet.subscribe` a callback (no Deferred, no timer, no closure per watcher, since tens
of thousands of blocking queries may be parked at once; their deadlines live in
:mod:`wanfedtx.state.blocking`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable


class WatchChannel:
    """One-shot notification: fired at most once, then discarded by its registry."""

    __slots__ = ("_key", "_registry", "_watchers", "fired")

    def __init__(self, registry: ChannelRegistry | None = None, key: Hashable = None) -> None:
        self._registry = registry
        self._key = key
        # An insertion-ordered set: watchers are woken in the order they subscribed.
        self._watchers: dict[WatchSet, None] = {}
        self.fired = False

    def subscribe(self, watcher: WatchSet) -> None:
        if self.fired:
            watcher.channel_fired()
            return
        self._watchers[watcher] = None

    def unsubscribe(self, watcher: WatchSet) -> None:
        self._watchers.pop(watcher, None)
        if not self._watchers and self._registry is not None and not self.fired:
            self._registry.discard(self._key, self)

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        watchers, self._watchers = self._watchers, {}
        for watcher in watchers:
            watcher.channel_fired()

    @property
    def subscriber_count(self) -> int:
        return len(self._watchers)


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
    """The channels one query read from; fires (once) when any of them does."""

    __slots__ = ("_channels", "_notify")

    def __init__(self) -> None:
        self._channels: list[WatchChannel] = []
        self._notify: Callable[[], None] | None = None

    def add(self, channel: WatchChannel) -> None:
        self._channels.append(channel)

    def __len__(self) -> int:
        return len(self._channels)

    def subscribe(self, notify: Callable[[], None]) -> None:
        """Call ``notify`` once, when the first channel fires (at once if one already has).

        Firing (or :meth:`close`) drops every subscription, so nothing is left behind.
        """
        if self._notify is not None:
            raise RuntimeError("WatchSet is already subscribed")
        self._notify = notify
        for channel in self._channels:
            channel.subscribe(self)
            if self._notify is None:  # that channel had fired already
                return

    def channel_fired(self) -> None:
        """Called by a channel of this set when it fires."""
        notify = self._notify
        if notify is None:
            return
        self.close()
        notify()

    def close(self) -> None:
        """Stop watching: drop subscriptions and channels nobody else watches."""
        self._notify = None
        channels, self._channels = self._channels, []
        for channel in channels:
            channel.unsubscribe(self)


def fire_all(channels: Iterable[WatchChannel]) -> None:
    """Fire every channel in ``channels`` (after a write has completed)."""
    for channel in channels:
        channel.fire()
