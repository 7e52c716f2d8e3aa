"""No credential of a report URL reaches the log: userinfo and secret-looking query
parameters are redacted wherever HttpReport prints its URL."""

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from hf_eco2ai import HttpReport
from hf_eco2ai.integrations import redact_text, redact_url

SECRETS = ["s3cr3tpw", "AKIAKEYVALUE", "tok-123", "sigvalue", "amzsig", "pw2"]


def test_redact_url_hides_userinfo_and_secret_parameters():
    url = (
        "https://alice:s3cr3tpw@carbon.example:8443/v1/runs?project=bert&api_key=AKIAKEYVALUE"
        "&access_token=tok-123&sig=sigvalue&X-Amz-Signature=amzsig&page=2#top"
    )
    out = redact_url(url)
    for s in SECRETS[:5]:
        assert s not in out, out
    assert "alice" not in out, out
    assert out == (
        "https://REDACTED@carbon.example:8443/v1/runs?project=bert&api_key=REDACTED"
        "&access_token=REDACTED&sig=REDACTED&X-Amz-Signature=REDACTED&page=2#top"
    )


@pytest.mark.parametrize(
    "name", ["apikey", "key", "token", "secret", "password", "signature", "Api%5FKey", "client_secret"]
)
def test_every_secret_looking_name_is_redacted(name):
    assert redact_url(f"http://h/p?{name}=v4lue&n=1") == f"http://h/p?{name}=REDACTED&n=1"


def test_plain_urls_are_unchanged():
    for url in ["http://127.0.0.1:9/runs", "https://h/p?project=x&step=3", "http://h/p?flag"]:
        assert redact_url(url) == url


def test_error_text_is_scrubbed_of_each_secret():
    url = "http://bob:pw2@h/x?token=tok-123"
    text = f"nonnumeric port: 'pw2@h' in {url}; token tok-123"
    out = redact_text(text, url)
    assert "pw2" not in out and "tok-123" not in out, out


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_failed_report_logs_a_redacted_url(caplog):
    url = f"http://127.0.0.1:{_closed_port()}/runs?api_key=AKIAKEYVALUE&project=p"
    with caplog.at_level(logging.ERROR, logger="hf_eco2ai"):
        assert not HttpReport(url, retries=0).send({"x": 1})
    assert "failed after 1 attempts" in caplog.text
    assert "AKIAKEYVALUE" not in caplog.text, caplog.text
    assert "api_key=REDACTED" in caplog.text, caplog.text


def test_a_refused_report_logs_a_redacted_url(caplog):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(403)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/runs?token=tok-123"
        with caplog.at_level(logging.ERROR, logger="hf_eco2ai"):
            assert not HttpReport(url, retries=0).send({"x": 1})
        assert "refused: HTTP 403" in caplog.text
        assert "tok-123" not in caplog.text, caplog.text
    finally:
        httpd.shutdown()


def test_a_bad_url_error_does_not_echo_its_secret():
    with pytest.raises(ValueError) as e:
        HttpReport("ftp://u:s3cr3tpw@h/x")
    assert "s3cr3tpw" not in str(e.value)
