"""A bot told to stop (SIGTERM: Kubernetes stopping its pod, passed on by the image's init)
takes no new connection, finishes the answers it is writing and the work queued after them,
then ends with status 0 (:func:`bot.http.serve`, :meth:`bot.deps.AfterAnswer.drain`, as
``meshops.wiring.run_bot`` calls them; Socket Mode: ``tests/bot/test_socket_health.py``)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from bot.deps import AfterAnswer
from tests.conftest import ROOT, eventually, free_port_base

#: serves as run_bot does in HTTP mode: the app behind AfterAnswer.holding, then a drain
SERVER = """
import sys, time
from pathlib import Path
from bot.deps import AfterAnswer
from bot.http import serve

state = Path(sys.argv[2])
after = AfterAnswer()

def app(environ, start_response):
    def work():
        time.sleep(3)  # the test looks at the port meanwhile
        (state / "done").write_text("the work queued after the answer is done")
    after(work)
    (state / "answering").touch()
    time.sleep(0.8)  # still answering when SIGTERM comes
    start_response("200 OK", [("content-type", "text/plain"), ("content-length", "6")])
    return [b"answer"]

serve(after.holding(app), "127.0.0.1", int(sys.argv[1]))
print("drained", after.drain(10), flush=True)
"""


def connects(port: int) -> bool:
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
        return True
    except OSError:
        return False


def test_sigterm_lets_the_answer_being_written_and_its_after_answer_work_finish(
        tmp_path: Path) -> None:
    port = free_port_base(17000, 18000)
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(tmp_path)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        eventually(lambda: server.poll() is None and connects(port), 30)
        answer: dict[str, Any] = {}

        def ask() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/slack/events", body=b"x")
            resp = conn.getresponse()
            answer.update(status=resp.status, body=resp.read())

        asking = threading.Thread(target=ask)
        asking.start()
        eventually(lambda: (tmp_path / "answering").exists(), 10)
        server.send_signal(signal.SIGTERM)  # while the request is being answered
        asking.join(10)
        assert answer == {"status": 200, "body": b"answer"}
        # while its after-answer work goes on, the port takes no new connection
        eventually(lambda: not connects(port), 2)
        assert server.poll() is None and not (tmp_path / "done").exists()
        out, _ = server.communicate(timeout=20)
        assert server.returncode == 0, out
        assert "drained True" in out and "http.stopped" in out
        assert (tmp_path / "done").read_text() == "the work queued after the answer is done"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_a_drain_waits_for_the_request_still_being_answered_to_queue_its_work() -> None:
    after, log = AfterAnswer(), []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        after(lambda: log.append("work"))
        return [b"ok"]

    after(lambda: None)  # the work's thread has started
    body = after.holding(app)({}, lambda *a: None)  # answered, not yet written
    threading.Timer(0.3, lambda: list(body)).start()  # written 0.3 s later
    assert after.drain(5) is True
    assert log == ["work"]
    slow = after.holding(app)({}, lambda *a: None)  # never written
    assert after.drain(0.3) is False  # it says the work may not all be done
    slow.close()
