"""The guide's integrations as it writes them: CarbonAccountingAPI receives the run's
carbon report (retried, key only in a header), AWSCostExplorer's compute cost (SigV4
checked by the server) lands in the cost breakdown."""

import datetime
import json
import logging
import os
import re
import secrets
import urllib.request

import pytest
from transformers import TrainerCallback

from _local_servers import AccountingAPI, CostExplorer, verify_sigv4
from hf_eco2ai import CarbonConfig, Eco2AICallback
from hf_eco2ai.integrations import AWSCostExplorer, CarbonAccountingAPI, sigv4_sign
from test_trainer import _trainer


class _Slow(TrainerCallback):
    """Sleeps at the end of each step, so a run lasts long enough to measure."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        import time

        time.sleep(self.seconds)

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
PAYLOAD_KEYS = {
    "schema", "run_id", "project", "model", "host", "start", "end", "duration_s", "energy_kwh",
    "gpu_energy_kwh", "cpu_energy_kwh", "pue", "co2_kg", "intensity_g_per_kwh", "intensity_source",
    "cost", "steps", "samples", "samples_per_kwh", "budget_exceeded_at_step",
}


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Scrape(TrainerCallback):
    """Scrapes the probe's /metrics once, mid-training."""

    def __init__(self, cb, at_step=5):
        self.cb, self.at_step, self.text = cb, at_step, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at_step and self.cb.metrics_addr:
            with urllib.request.urlopen(f"http://{self.cb.metrics_addr}/metrics", timeout=5) as r:
                self.text = r.read().decode()


def _parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _everything_written(root):
    out = b""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                out += f.read()
    return out


def test_the_accounting_api_gets_the_report_after_retries_and_the_key_stays_in_the_header(tmp_path, caplog):
    api_key = "sk-" + secrets.token_hex(16)
    srv = AccountingAPI(fail=2, status=503)
    try:
        api = CarbonAccountingAPI(f"{srv.url}/v1/runs", api_key=api_key, timeout_s=5, retries=3, backoff_s=0.01)
        assert api_key not in repr(api)
        cfg = CarbonConfig(project_name="acct", model_name="gpt2-tiny", country="FR", price_per_kwh=0.2,
                           output_dir=str(tmp_path / "runs"), prometheus_port=_free_port())
        cb = Eco2AICallback(config=cfg, integrations=[api])
        trainer = _trainer(tmp_path, cb, max_steps=10)
        scrape = _Scrape(cb)
        trainer.add_callback(scrape)
        # Steps of 0.15 s: the run outlasts the probe's first CPU-energy readings even on
        # a loaded machine (0.2 s of training alone can end before any).
        trainer.add_callback(_Slow(0.15))
        with caplog.at_level(logging.DEBUG):
            trainer.train()
    finally:
        srv.close()

    assert srv.calls == 3, "two 503s, then accepted"
    assert len(srv.received) == 1
    req = srv.requests[-1]
    assert req["headers"]["authorization"] == f"Bearer {api_key}"
    assert api_key not in req["path"] and req["path"] == "/v1/runs"
    assert req["headers"]["content-type"] == "application/json"

    p = srv.received[0]
    assert set(p) == PAYLOAD_KEYS
    assert p["schema"] == "hf-eco2ai/carbon-report/v1"
    assert p["run_id"] == os.path.basename(cb.run_dir)
    assert (p["project"], p["model"]) == ("acct", "gpt2-tiny")
    assert RFC3339.match(p["start"]) and RFC3339.match(p["end"])
    span_s = (_parse(p["end"]) - _parse(p["start"])).total_seconds()
    assert span_s == pytest.approx(p["duration_s"], abs=0.5)
    assert (p["steps"], p["samples"]) == (10, 40)
    assert p["energy_kwh"] > 0
    assert p["co2_kg"] == pytest.approx(p["energy_kwh"] * 41.44 / 1000, rel=1e-3)
    assert p["intensity_g_per_kwh"] == pytest.approx(41.44)
    assert "FR" in p["intensity_source"]
    assert p["samples_per_kwh"] == pytest.approx(40 / p["energy_kwh"])
    assert p["cost"]["energy"] == pytest.approx(p["energy_kwh"] * 0.2)
    assert p["cost"]["total"] == pytest.approx(p["cost"]["energy"])

    # The key is nowhere but in that header.
    assert scrape.text and "hf_training_" in scrape.text and api_key not in scrape.text
    assert api_key.encode() not in _everything_written(tmp_path / "runs")
    assert api_key not in caplog.text
    assert api_key not in json.dumps(cb.summary)


def test_x_api_key_header_and_keys_in_urls_are_refused():
    srv = AccountingAPI()
    try:
        api = CarbonAccountingAPI(f"{srv.url}/r", api_key="k-123", auth_header="X-API-Key", backoff_s=0.01)
        assert api.send({"project_name": "p"})
        assert srv.requests[0]["headers"]["x-api-key"] == "k-123"
        assert "authorization" not in srv.requests[0]["headers"]
    finally:
        srv.close()
    for url in ("http://127.0.0.1:1/r?api_key=k-123", "http://user:k-123@127.0.0.1:1/r"):
        with pytest.raises(ValueError, match="api_key=") as e:
            CarbonAccountingAPI(url)
        assert "k-123" not in str(e.value)


# AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite): credentials
# AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, us-east-1, service "service".
@pytest.mark.parametrize("url, signature", [
    ("https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("https://example.amazonaws.com/?Param1=value1", "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"),
], ids=["get-vanilla", "get-vanilla-query"])
def test_sigv4_matches_the_published_test_vectors(url, signature):
    h = sigv4_sign("GET", url, {}, b"", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                   "us-east-1", "service", "20150830T123600Z")
    assert h["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )


def test_the_test_servers_verifier_refuses_a_wrong_signature():
    when = datetime.datetime(2015, 8, 30, 12, 36, tzinfo=datetime.timezone.utc)
    body = b'{"a": 1}'
    headers = {"Host": "h", "Content-Type": "application/x-amz-json-1.1"}
    signed = sigv4_sign("POST", "http://h/", headers, body, "AK", "right", "us-east-1", "ce", "20150830T123600Z")
    assert verify_sigv4("POST", "/", {**headers, **signed}, body, {"AK": "right"}, now=when) is None
    assert verify_sigv4("POST", "/", {**headers, **signed}, body, {"AK": "wrong"}, now=when) == "signature does not match"
    assert verify_sigv4("POST", "/", {**headers, **signed}, b'{"a": 2}', {"AK": "right"}, now=when) is not None


def test_aws_compute_cost_feeds_the_cost_breakdown_and_the_report(tmp_path, caplog):
    key_id, secret = "AKIATESTKEY", "s3cr3t/" + secrets.token_hex(12)
    aws_srv = CostExplorer({key_id: secret}, daily_amounts=[10.0, 2.34])
    api_srv = AccountingAPI()
    try:
        aws = AWSCostExplorer(key_id, secret, "eu-west-1", endpoint_url=aws_srv.url + "/", retries=0)
        api = CarbonAccountingAPI(api_srv.url + "/runs", api_key="k", backoff_s=0.01)
        cfg = CarbonConfig(project_name="aws-job", country="FR", price_per_kwh=0.2, gpu_hour_usd=2.5,
                           output_dir=str(tmp_path / "runs"), export_prometheus=False)
        cb = Eco2AICallback(config=cfg, integrations=[api, aws])
        with caplog.at_level(logging.INFO, logger="hf_eco2ai"):
            _trainer(tmp_path, cb, max_steps=5).train()
    finally:
        aws_srv.close()
        api_srv.close()

    assert aws_srv.rejected == []
    (req,) = aws_srv.requests
    body = req["body"]
    today = datetime.datetime.now(datetime.timezone.utc).date()
    assert body["TimePeriod"]["Start"] <= today.isoformat() < body["TimePeriod"]["End"]
    assert body["Granularity"] == "DAILY" and body["Metrics"] == ["UnblendedCost"]
    flt = json.dumps(body["Filter"])
    assert '"aws-job"' in flt and '"eu-west-1"' in flt
    assert secret not in json.dumps(req)

    cost = cb.summary["cost"]
    assert cost["compute_usd"] == pytest.approx(12.34)
    assert cost["compute_source"].startswith("aws-cost-explorer UnblendedCost")
    assert cost["total_usd"] == pytest.approx(12.34 + cost["energy_usd"])
    assert "compute $12.3400 (aws-cost-explorer" in caplog.text
    (sent,) = api_srv.received
    assert sent["cost"]["compute"] == pytest.approx(12.34) and sent["cost"]["total"] == pytest.approx(cost["total_usd"])
    assert secret not in caplog.text


def test_a_wrong_secret_is_refused_by_the_server_and_the_cost_is_left_out(caplog):
    srv = CostExplorer({"AK": "right"}, daily_amounts=[5.0])
    try:
        wrong = "wr0ng-" + secrets.token_hex(8)
        aws = AWSCostExplorer("AK", wrong, "us-east-1", endpoint_url=srv.url + "/", retries=0)
        summary = {"project_name": "p", "start": "2026-12-03T10:00:00.000Z", "end": "2026-12-03T11:00:00.000Z",
                   "cost": {"energy_usd": 1.0, "compute_usd": None, "compute_source": None, "total_usd": 1.0}}
        aws.enrich(summary)
    finally:
        srv.close()
    assert srv.rejected == ["signature does not match"]
    assert summary["cost"]["compute_usd"] is None and summary["cost"]["total_usd"] == 1.0
    assert "HTTP 403" in caplog.text and wrong not in caplog.text
