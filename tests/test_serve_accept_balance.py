"""Which worker takes the next connection (service/web/accept_balance.py): one holding the fewest.

The workers of a served process share one listening socket; each publishes the connections it holds
in shared memory. `test_serve_process.py` checks a real served process spreads keep-alive
connections over its workers.
"""

from __future__ import annotations

import os
import signal

import pytest

from service.web import accept_balance
from service.web.accept_balance import STALE_SECONDS, AcceptBalance


@pytest.fixture
def clock():
    return [1000.0]


@pytest.fixture
def balance(clock):
    shared = AcceptBalance(slots=4, clock=lambda: clock[0])
    shared.open()
    return shared


def test_a_worker_stops_listening_only_for_a_listening_worker_holding_fewer(balance):
    balance.publish(0, 3, listening=True)
    balance.publish(1, 2, listening=False)
    assert balance.may_listen(0, 3)  # worker 1 holds fewer but does not listen: 0 keeps listening
    balance.publish(1, 2, listening=True)
    assert not balance.may_listen(0, 3)
    assert balance.may_listen(0, 2)  # ties listen together
    assert balance.may_listen(1, 2)


def test_a_worker_that_stopped_publishing_or_was_withdrawn_is_left_out(balance, clock):
    balance.publish(0, 5, listening=True)
    balance.publish(1, 0, listening=True)
    assert not balance.may_listen(0, 5) and balance.holds_surplus(0, 5)
    clock[0] += STALE_SECONDS + 0.1  # worker 1 exited, stuck or killed: it no longer publishes
    balance.publish(0, 5, listening=True)
    assert balance.may_listen(0, 5) and not balance.holds_surplus(0, 5)
    balance.publish(1, 0, listening=True)
    balance.withdraw(1)  # stopping, or withdrawn by the master once it exited
    assert balance.may_listen(0, 5) and not balance.holds_surplus(0, 5)


def test_a_slot_never_published_is_left_out(balance):
    balance.publish(2, 7, listening=True)
    assert balance.may_listen(2, 7) and not balance.holds_surplus(2, 7)


def test_a_surplus_is_two_connections_above_the_fewest_any_live_worker_holds(balance):
    balance.publish(0, 4, listening=False)
    balance.publish(1, 3, listening=True)
    assert not balance.holds_surplus(0, 4)  # 4/3: as even as 7 connections get
    assert balance.holds_surplus(0, 5)  # 5/3: one of them should move
    balance.publish(2, 2, listening=False)
    assert balance.holds_surplus(0, 4)


def test_the_worker_taking_a_connection_wakes_only_those_holding_fewer_that_do_not_listen(balance, monkeypatch):
    woken = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: woken.append((pid, sig)))
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    balance.publish(1, 1, listening=False)  # fewer, not listening: woken
    monkeypatch.setattr(os, "getpid", lambda: 4343)
    balance.publish(2, 1, listening=True)  # fewer, listening already: left alone
    monkeypatch.setattr(os, "getpid", lambda: 4444)
    balance.publish(3, 3, listening=False)  # as many: left alone
    balance.wake_those_holding_fewer(0, 3)
    assert woken == [(4242, signal.SIGWINCH)]


def test_workers_forked_after_it_is_opened_share_what_each_publishes(balance):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a worker publishing its count
        try:
            balance.publish(1, 0, listening=True)
            os.write(write, b"x")
        finally:
            os._exit(0)
    os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    os.close(write)
    assert not balance.may_listen(0, 2)  # the parent sees the child's slot


def test_slots_come_from_the_spawn_number():
    assert AcceptBalance(slots=4).slot_of(9) == 1
    assert accept_balance.SLOTS >= 16


class _SilentConnection:
    """A new connection whose client has sent nothing."""

    initialized = False

    def __init__(self) -> None:
        self.waited: list[float] = []

    def wait_for_data(self, timeout: float) -> bool:
        self.waited.append(timeout)
        return False


def test_a_new_connection_that_sent_nothing_goes_back_to_the_poller_without_holding_the_thread():
    from gunicorn.workers import gthread

    from service.web.gunicorn_worker import FIRST_BYTES_WAIT_SECONDS, OutcomeThreadWorker

    worker = OutcomeThreadWorker.__new__(OutcomeThreadWorker)  # only handle() is called
    connection = _SilentConnection()
    assert worker.handle(connection) is gthread._DEFER
    assert connection.waited == [FIRST_BYTES_WAIT_SECONDS]
    assert FIRST_BYTES_WAIT_SECONDS < gthread.DEFAULT_WORKER_DATA_TIMEOUT
