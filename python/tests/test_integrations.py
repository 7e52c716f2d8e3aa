import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from hf_eco2ai import HttpReport


class _Server:
    """A local carbon-accounting API that fails the first `fail` requests."""

    def __init__(self, fail=0, status=503):
        self.received = []
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.calls += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.calls <= fail:
                    self.send_response(status)
                    self.end_headers()
                    return
                outer.received.append(json.loads(body))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/runs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_retries_until_the_endpoint_accepts_and_sends_once():
    srv = _Server(fail=2)
    try:
        report = {"project_name": "p", "co2_kg": 0.5}
        assert HttpReport(srv.url, retries=3, backoff_s=0.01).send(report)
        assert srv.calls == 3
        assert srv.received == [report]
    finally:
        srv.close()


def test_a_client_error_is_not_retried():
    srv = _Server(fail=10, status=400)
    try:
        h = HttpReport(srv.url, retries=3, backoff_s=0.01)
        assert not h.send({"x": 1})
        assert srv.calls == 1
    finally:
        srv.close()


def test_an_unreachable_endpoint_gives_up_after_the_retries(caplog):
    srv = _Server()
    url = srv.url
    srv.close()
    srv.httpd.server_close()
    h = HttpReport(url, retries=2, backoff_s=0.01, timeout_s=1)
    assert not h.send({"x": 1})
    assert h.attempts == 3
    assert "failed after 3 attempts" in caplog.text
