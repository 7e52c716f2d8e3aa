"""Where a finished run's report goes besides the log, and where its costs come from.

    from hf_eco2ai import CarbonConfig, Eco2AICallback
    from hf_eco2ai.integrations import CarbonAccountingAPI, AWSCostExplorer

    api = CarbonAccountingAPI("https://carbon.example.com/v1/runs", api_key=os.environ["CARBON_API_KEY"])
    aws = AWSCostExplorer(key_id, secret, "us-east-1")
    cb = Eco2AICallback(config=CarbonConfig(project_name="bert-ft", country="FR"), integrations=[aws, api])

At train end the callback first lets every integration with an `enrich(summary)`
method complete the summary (AWSCostExplorer puts the compute cost it read into the
cost breakdown), then logs the summary and calls `send(summary)` on every integration
that has one (CarbonAccountingAPI POSTs the carbon report, schema in its docstring).
A failing integration is logged and never fails the training.
"""

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request

log = logging.getLogger("hf_eco2ai")

# Query parameters whose values are credentials (names compared lower-case, decoded).
_SECRET_NAMES = {
    "api_key", "apikey", "api-key", "key", "token", "access_token", "refresh_token",
    "id_token", "auth", "authorization", "secret", "client_secret", "password", "passwd",
    "pwd", "sig", "signature", "credential", "credentials",
}
_SECRET_PREFIXES = ("x-amz-", "x-goog-")
_SECRET_PARTS = ("token", "secret", "password", "passwd", "signature", "apikey", "api_key")
REDACTED = "REDACTED"


def _is_secret(name):
    n = urllib.parse.unquote_plus(name).strip().lower()
    return n in _SECRET_NAMES or n.startswith(_SECRET_PREFIXES) or any(p in n for p in _SECRET_PARTS)


def redact_url(url):
    """`url` fit for a log: the userinfo (`user:pass@`) and the values of query
    parameters named like credentials (api_key, token, sig, X-Amz-*...) replaced by
    REDACTED; everything else kept as it was written."""
    text = str(url)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    pairs = []
    for pair in parts.query.split("&") if parts.query else []:
        name, eq, _value = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if eq and _is_secret(name) else pair)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "&".join(pairs), parts.fragment))


def _secrets(url):
    """The credential strings in `url` (userinfo, its password, secret query values)."""
    try:
        parts = urllib.parse.urlsplit(str(url))
    except ValueError:
        return [str(url)]
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found += [userinfo, userinfo.partition(":")[2]]
    for pair in parts.query.split("&") if parts.query else []:
        name, eq, value = pair.partition("=")
        if eq and _is_secret(name):
            found += [value, urllib.parse.unquote_plus(value)]
    return sorted({f for f in found if f}, key=len, reverse=True)


def redact_text(text, url):
    """`text` (an error message) with the URL and every credential of `url` redacted."""
    out = str(text).replace(str(url), redact_url(url))
    for secret in _secrets(url):
        out = out.replace(secret, REDACTED)
    return out


class HttpReport:
    """POSTs the run report as JSON to `url` at train end. Retries connection errors
    and 5xx/429 answers with exponential backoff; gives up after `retries` retries
    with an error in the log (training is never failed by a report)."""

    def __init__(self, url, headers=None, retries=3, backoff_s=0.5, timeout_s=10.0):
        if not str(url).startswith(("http://", "https://")):
            raise ValueError(f"HttpReport url must be http(s)://..., got {redact_url(url)!r}")
        self.url = url
        self.headers = dict(headers or {})
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self.attempts = 0

    def send(self, report):
        body = json.dumps(report).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        for attempt in range(self.retries + 1):
            self.attempts += 1
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    reason = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                if e.code < 500 and e.code != 429:
                    log.error("hf-eco2ai: report to %s refused: HTTP %s", redact_url(self.url), e.code)
                    return False
                reason = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError, ValueError) as e:
                # ValueError: http.client.InvalidURL, whose message quotes the URL.
                reason = redact_text(e, self.url)
            if attempt < self.retries:
                time.sleep(self.backoff_s * (2**attempt))
        log.error(
            "hf-eco2ai: report to %s failed after %d attempts: %s",
            redact_url(self.url),
            self.retries + 1,
            reason,
        )
        return False


class CarbonAccountingAPI(HttpReport):
    """Submits the run's carbon report (JSON, POST) to a carbon-accounting endpoint at
    train end, retrying connection errors and 5xx/429 answers with exponential backoff.

    The API key travels only in a header: `Authorization: Bearer KEY` (default) or
    `X-API-Key: KEY` (auth_header="X-API-Key"). It is never put in the URL (a URL that
    carries credentials is refused), the payload, the run directory, the log or the
    metrics; repr() does not show it.

    Payload (schema "hf-eco2ai/carbon-report/v1"; null where unknown):
        schema            "hf-eco2ai/carbon-report/v1"
        run_id            the probe's run id (name of the run directory)
        project, model    CarbonConfig.project_name, model_name
        host              machine name
        start, end        RFC 3339 UTC, e.g. "2026-12-03T13:49:28.123Z"
        duration_s        seconds recorded
        energy_kwh        facility energy (IT energy x pue); gpu_energy_kwh, cpu_energy_kwh
        pue               power usage effectiveness applied
        co2_kg            kg CO2e
        intensity_g_per_kwh, intensity_source   grid intensity and where it came from
        cost              {"currency": "USD", "energy", "compute", "compute_source", "total"}
                          compute_source: "gpu_hour_usd" or "aws-cost-explorer ..."
        steps, samples    training steps and their samples (eval and other phases' left out)
        samples_per_kwh   samples / energy_kwh
        budget_exceeded_at_step   step at which the carbon budget stopped training
    """

    def __init__(self, endpoint, api_key=None, timeout_s=10.0, retries=3, backoff_s=0.5, auth_header="Authorization"):
        if _secrets(endpoint):
            raise ValueError(
                f"CarbonAccountingAPI endpoint carries credentials ({redact_url(endpoint)}): "
                "pass the key as api_key=, it is sent in a header"
            )
        if auth_header not in ("Authorization", "X-API-Key"):
            raise ValueError(f"auth_header must be 'Authorization' or 'X-API-Key', got {auth_header!r}")
        headers = {}
        if api_key:
            headers[auth_header] = f"Bearer {api_key}" if auth_header == "Authorization" else str(api_key)
        super().__init__(endpoint, headers=headers, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s)
        self.last_payload = None

    def __repr__(self):
        return f"CarbonAccountingAPI({redact_url(self.url)!r}, api_key={'***' if self.headers else None})"

    def send(self, summary):
        from .report import carbon_report

        self.last_payload = carbon_report(summary) if "cost" in summary else summary
        return super().send(self.last_payload)


from .aws import AWSCostExplorer, sigv4_sign  # noqa: E402  (re-exported: the guide imports it from here)

__all__ = ["AWSCostExplorer", "CarbonAccountingAPI", "HttpReport", "redact_url", "sigv4_sign"]
