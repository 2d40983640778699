"""What a listener does after its ack starts once the HTTP answer is written
(:class:`bot.deps.AfterAnswer`), through a real waitress server as ``meshops bot`` serves."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest

from bot.deps import AfterAnswer
from bot.http import make_server
from tests.conftest import eventually, free_port_base, running


def queuing_app(after: AfterAnswer, log: list[str], fail: bool = False) -> Any:
    """A WSGI app whose 'listener' queues work, as Bolt's do, then answers (or raises)."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        after(lambda: log.append("work"))
        log.append("listener returned")
        if fail:
            raise RuntimeError("listener failed")
        start_response("200 OK", [("content-type", "text/plain"), ("content-length", "2")])
        return [b"ok"]

    return app


def test_work_queued_while_answering_waits_for_the_answer_to_be_written() -> None:
    after, log = AfterAnswer(), []
    wsgi = after.holding(queuing_app(after, log))
    body = wsgi({"REQUEST_METHOD": "POST"}, lambda *a: None)
    threading.Event().wait(0.2)  # the work's thread would have run it by now
    assert log == ["listener returned"]
    assert list(body) == [b"ok"]  # the server wrote it
    eventually(lambda: log == ["listener returned", "work"])
    body.close()  # PEP 3333: the server closes it too; nothing runs twice
    threading.Event().wait(0.1)
    assert log == ["listener returned", "work"]


def test_a_body_closed_unread_and_a_failed_request_release_their_work() -> None:
    after, log = AfterAnswer(), []
    body = after.holding(queuing_app(after, log))({}, lambda *a: None)
    body.close()  # a client gone before the answer was written
    eventually(lambda: log.count("work") == 1)
    with pytest.raises(RuntimeError):
        after.holding(queuing_app(after, log, fail=True))({}, lambda *a: None)
    eventually(lambda: log.count("work") == 2)


def test_work_queued_outside_a_request_runs_at_once() -> None:
    after, log = AfterAnswer(), []
    after(lambda: log.append("work"))  # Socket Mode: no WSGI request to wait for
    eventually(lambda: log == ["work"])


def test_through_waitress_the_answer_keeps_its_length_and_the_work_follows() -> None:
    after, log = AfterAnswer(), []
    port = free_port_base(16000, 17000)
    with running(make_server(after.holding(queuing_app(after, log)), "127.0.0.1", port)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for n in (1, 2):  # one kept-alive connection: the length frames each answer
            conn.request("POST", "/slack/events", body=b"x")
            resp = conn.getresponse()
            assert (resp.status, resp.getheader("content-length"), resp.read()) == (
                200, "2", b"ok")
            eventually(lambda n=n: log.count("work") == n)
        conn.close()


def test_work_waits_while_another_request_is_answered_and_no_longer_than_its_cap() -> None:
    after, log = AfterAnswer(), []
    after.YIELD_MAX_S = 1.0
    wsgi = after.holding(queuing_app(after, log))
    slow = wsgi({}, lambda *a: None)  # a request still being answered (its body not written)
    quick = wsgi({}, lambda *a: None)
    list(quick)  # answered: its work is queued
    threading.Event().wait(0.3)
    assert log.count("work") == 0  # it yields to the request still being answered
    slow.close()
    eventually(lambda: log.count("work") == 2, 2)

    log.clear()
    stuck = wsgi({}, lambda *a: None)  # never written: the work goes on after the cap
    list(wsgi({}, lambda *a: None))
    started = time.monotonic()
    eventually(lambda: log.count("work") == 1, 3)
    assert 0.9 <= time.monotonic() - started <= 2.0
    stuck.close()
