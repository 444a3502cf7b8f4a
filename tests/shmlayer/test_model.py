"""Model-based test: the shm layer against a small in-Python model of the contract."""

from __future__ import annotations

import collections
import os

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import shmlayer

from .conftest import unique_name

CAPACITY = 3
SEND_TARGETS = ["a", "b", "p!x", "p!y", "q!z"]
RECEIVE_TARGETS = ["a", "b", "p!", "q!"]
GROUPS = ["g1", "g2"]


def queue_of(channel: str) -> str:
    return channel[: channel.index("!") + 1] if "!" in channel else channel


class LayerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.layer = shmlayer.ShmChannelLayer(name=unique_name("model"), size=1 << 20, capacity=CAPACITY,
                                              max_message_size=4096)
        self.queues: dict[str, collections.deque[tuple[str, int]]] = collections.defaultdict(collections.deque)
        self.groups: dict[str, set[str]] = collections.defaultdict(set)
        self.counter = 0

    def teardown(self) -> None:
        self.layer.unlink()
        assert not os.path.exists(f"/dev/shm/{self.layer.segment_name}")

    def pending(self, channel: str) -> int:
        return sum(1 for name, _ in self.queues[queue_of(channel)] if name == channel)

    @rule(channel=st.sampled_from(SEND_TARGETS))
    def send(self, channel: str) -> None:
        self.counter += 1
        if self.pending(channel) >= CAPACITY:
            try:
                self.layer.send(channel, {"n": self.counter})
            except shmlayer.ChannelFull:
                return
            raise AssertionError(f"{channel} should be full")
        self.layer.send(channel, {"n": self.counter})
        self.queues[queue_of(channel)].append((channel, self.counter))

    @rule(names=st.lists(st.sampled_from(RECEIVE_TARGETS), min_size=1, max_size=3, unique=True))
    def receive(self, names: list[str]) -> None:
        targets = names
        channel, message = self.layer.receive(targets)
        # The copies of one send_group may come in any member order; everything else is FIFO.
        heads = {}
        for queue in targets:
            entries = self.queues[queue]
            if entries:
                heads[queue] = [entry for entry in entries if entry[1] == entries[0][1]]
        if not heads:
            assert (channel, message) == (None, None)
            return
        assert channel is not None and message is not None
        queue = queue_of(channel)
        assert (channel, message["n"]) in heads.get(queue, []), (channel, message, heads)
        self.queues[queue].remove((channel, message["n"]))

    @rule(group=st.sampled_from(GROUPS), channel=st.sampled_from(SEND_TARGETS))
    def group_add(self, group: str, channel: str) -> None:
        self.layer.group_add(group, channel)
        self.groups[group].add(channel)

    @rule(group=st.sampled_from(GROUPS), channel=st.sampled_from(SEND_TARGETS))
    def group_discard(self, group: str, channel: str) -> None:
        self.layer.group_discard(group, channel)
        self.groups[group].discard(channel)

    @rule(group=st.sampled_from(GROUPS))
    def send_group(self, group: str) -> None:
        self.counter += 1
        self.layer.send_group(group, {"n": self.counter})
        for channel in sorted(self.groups[group]):
            if self.pending(channel) < CAPACITY:
                self.queues[queue_of(channel)].append((channel, self.counter))

    @precondition(lambda self: self.counter % 7 == 3)
    @rule()
    def flush(self) -> None:
        self.layer.flush()
        self.queues.clear()
        self.groups.clear()
        self.counter += 1

    @invariant()
    def groups_match(self) -> None:
        for group in GROUPS:
            assert sorted(self.layer.group_channels(group)) == sorted(self.groups[group])

    @invariant()
    def pending_match_and_consistent(self) -> None:
        for channel in SEND_TARGETS:
            assert self.layer.channel_statistics(channel)["messages_pending"] == self.pending(channel)
        assert self.layer.verify() == []


TestLayerModel = LayerModel.TestCase
TestLayerModel.settings = settings(max_examples=25, stateful_step_count=40, deadline=None)
