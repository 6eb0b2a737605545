"""The shared connection counts by which a worker holding more than its share of the keep-alive
connections closes one after answering (`test_serve_process.py` checks the spread on a served process)."""

from __future__ import annotations

import os
import subprocess
import sys

from service.web.connection_balance import ConnectionShares, install


def test_a_worker_above_an_even_spread_is_over_its_share_and_one_at_it_is_not():
    shares = ConnectionShares(2)
    busy, quiet = shares.claim(os.getpid()), shares.claim(os.getppid())   # two live processes
    shares.publish(busy, 6)
    shares.publish(quiet, 2)
    assert shares.over_share(busy) and not shares.over_share(quiet)
    shares.publish(busy, 5)
    shares.publish(quiet, 4)   # nine connections: 5/4 is as even as they go
    assert not shares.over_share(busy) and not shares.over_share(quiet)


def test_with_one_worker_holding_a_slot_nothing_is_ever_over_its_share():
    shares = ConnectionShares(2)
    alone = shares.claim(os.getpid())
    shares.publish(alone, 50)
    assert not shares.over_share(alone)


def test_a_slot_is_claimed_again_once_its_worker_has_exited_or_was_released():
    shares = ConnectionShares(2)
    first = shares.claim(os.getpid())
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    second = shares.claim(exited.pid)   # a pid no process holds any more
    shares.publish(second, 7)
    assert shares.claim(os.getppid()) == second   # the gone worker's slot, its count reset
    assert not shares.over_share(first)
    shares.release(os.getppid())
    assert shares.claim(123_456_789) == second


def test_no_slot_is_left_when_every_one_is_held_by_a_live_worker():
    shares = ConnectionShares(1)
    assert shares.claim(os.getpid()) == 0
    assert shares.claim(os.getppid()) is None


def test_a_server_of_one_worker_keeps_no_counts_and_one_of_several_does():
    assert install(1) is None
    shares = install(3)
    assert shares is not None and [shares.claim(pid) for pid in (os.getpid(), os.getppid())] == [0, 1]
    install(1)
