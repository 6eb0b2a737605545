"""`calcinosis-cds serve`: the gunicorn settings it computes from the settings and its options.

Connections must spread over every worker under keep-alive (`reuse_port`: one listening socket per
worker, balanced by the kernel), one worker per core by default, few threads per worker and bounded
queues. `test_serve_process.py` checks a real served process answers from more than one worker.
"""

from __future__ import annotations

import os

import pytest

from service.cli import main
from service.web import wsgi_server


@pytest.fixture
def served_with(monkeypatch):
    """Run `calcinosis-cds serve ...` up to gunicorn, returning the options gunicorn would get."""
    for name in list(os.environ):
        if name.startswith("CALCINOSIS_"):
            monkeypatch.delenv(name)
    captured: dict = {}

    def fake_serve(**arguments):
        captured.update(wsgi_server.gunicorn_options(**arguments))

    monkeypatch.setattr(wsgi_server, "serve", fake_serve)

    def run(*argv: str) -> dict:
        captured.clear()
        assert main(["serve", *argv]) == 0
        return dict(captured)

    return run


def test_by_default_one_worker_per_core_each_with_its_own_socket_and_two_threads(served_with):
    options = served_with()
    assert options["workers"] == len(os.sched_getaffinity(0)) == wsgi_server.cores_available()
    # gunicorn's gthread worker, whose parser refusals answer as OperationOutcomes
    from gunicorn.util import load_class
    from gunicorn.workers.gthread import ThreadWorker

    assert issubclass(load_class(options["worker_class"]), ThreadWorker)
    assert options["reuse_port"] is True
    assert options["threads"] == 2
    assert options["backlog"] == 1024
    assert options["bind"] == "127.0.0.1:8080"


def test_the_settings_set_workers_threads_and_backlog(served_with, monkeypatch):
    monkeypatch.setenv("CALCINOSIS_SERVE_WORKERS", "3")
    monkeypatch.setenv("CALCINOSIS_SERVE_THREADS", "4")
    monkeypatch.setenv("CALCINOSIS_SERVE_BACKLOG", "64")
    options = served_with()
    assert (options["workers"], options["threads"], options["backlog"]) == (3, 4, 64)


def test_the_command_line_options_win_over_the_settings(served_with, monkeypatch):
    monkeypatch.setenv("CALCINOSIS_SERVE_WORKERS", "3")
    options = served_with("--workers", "5", "--threads", "1", "--backlog", "16", "--host", "0.0.0.0",
                          "--port", "9090")
    assert (options["workers"], options["threads"], options["backlog"]) == (5, 1, 16)
    assert options["bind"] == "0.0.0.0:9090"


@pytest.mark.parametrize("name, value", [("CALCINOSIS_SERVE_WORKERS", "0"), ("CALCINOSIS_SERVE_THREADS", "many"),
                                         ("CALCINOSIS_SERVE_BACKLOG", "-1")])
def test_a_bad_serving_setting_stops_serve_with_one_line_naming_it(served_with, monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: configuration {name.removeprefix('CALCINOSIS_')} (environment {name})")
    assert err.count("\n") == 1


def test_a_worker_count_of_zero_on_the_command_line_is_a_usage_error(served_with, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--workers", "0"])
    assert exit_info.value.code == 2


def test_the_core_count_follows_the_cpu_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert wsgi_server.cores_available() == 3
    assert wsgi_server.gunicorn_options(host="h", port=1, workers=None, threads=2, backlog=8, timeout=60)["workers"] == 3


def test_a_served_worker_settles_its_heap_once_the_app_is_built(monkeypatch):
    import gc

    threshold = gc.get_threshold()
    built = []
    monkeypatch.setattr("service.web.app.create_app", lambda: built.append("app") or "the app")
    try:
        gc.unfreeze()
        application = wsgi_server._GunicornApplication.__new__(wsgi_server._GunicornApplication)
        assert application.load() == "the app" and built == ["app"]
        assert gc.get_freeze_count() > 0  # the start-up objects are out of the collector's view
        assert gc.get_threshold()[0] == wsgi_server.YOUNG_GENERATION_THRESHOLD
        assert gc.isenabled()  # cyclic garbage is still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
