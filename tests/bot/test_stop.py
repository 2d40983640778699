"""A bot told to stop (SIGTERM: Kubernetes stopping its pod, passed on by the image's init)
finishes the answers it is writing and the work queued after them, then ends with status 0
(:func:`bot.http.serve`, :meth:`bot.deps.AfterAnswer.drain`, ``meshops.wiring.run_bot``)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, eventually, free_port_base

#: serves as run_bot does in HTTP mode: the app behind AfterAnswer.holding, then a drain
SERVER = """
import sys, time
from pathlib import Path
from bot.deps import AfterAnswer
from bot.http import serve

out = Path(sys.argv[2])
after = AfterAnswer()

def app(environ, start_response):
    def work():
        time.sleep(0.3)
        out.write_text("the work queued after the answer is done")
    after(work)
    time.sleep(0.8)  # still answering when SIGTERM comes
    start_response("200 OK", [("content-type", "text/plain"), ("content-length", "6")])
    return [b"answer"]

print("serving", flush=True)
serve(after.holding(app), "127.0.0.1", int(sys.argv[1]))
print("drained", after.drain(10), flush=True)
"""


def test_sigterm_lets_the_answer_being_written_and_its_after_answer_work_finish(
        tmp_path: Path) -> None:
    port = free_port_base(17000, 18000)
    done = tmp_path / "done"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(done)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def listening() -> bool:
            assert server.poll() is None
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                return True
            except OSError:
                return False

        eventually(listening, 30)
        answer: dict[str, Any] = {}

        def ask() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/slack/events", body=b"x")
            resp = conn.getresponse()
            answer.update(status=resp.status, body=resp.read())

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(0.3)  # the request is being answered
        server.send_signal(signal.SIGTERM)
        asking.join(10)
        assert answer == {"status": 200, "body": b"answer"}
        out, _ = server.communicate(timeout=20)
        assert server.returncode == 0, out
        assert "drained True" in out and "http.stopped" in out
        assert done.read_text() == "the work queued after the answer is done"
        try:  # the listening socket went with it
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            raise AssertionError("still listening")
        except OSError:
            pass
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
