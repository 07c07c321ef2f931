"""The Sheets write cap: at most N write requests in any minute, bursts allowed within it."""

from __future__ import annotations

from arrears_ingest.writeback.pacing import WriteWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_bursts_within_the_limit_then_waits_for_the_oldest_to_age_out() -> None:
    clock = Clock()
    window = WriteWindow(3, 60.0, sleep=clock.sleep, clock=clock)
    sent = []
    for _ in range(7):
        window.acquire()
        sent.append(clock.now - 1000.0)
    assert sent == [0, 0, 0, 60, 60, 60, 120]
    # never more than 3 in any 60 s
    assert all(sum(1 for t in sent if s <= t < s + 60) <= 3 for s in sent)


def test_a_slow_trickle_never_waits() -> None:
    clock = Clock()
    window = WriteWindow(2, 60.0, sleep=clock.sleep, clock=clock)
    for _ in range(5):
        window.acquire()
        clock.now += 31.0
    assert clock.now == 1000.0 + 5 * 31.0
