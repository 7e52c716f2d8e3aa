"""Where a finished run's report goes besides the log: an HTTP endpoint (a
carbon-accounting API), with retries."""

import json
import logging
import time
import urllib.error
import urllib.request

log = logging.getLogger("hf_eco2ai")


class HttpReport:
    """POSTs the run report as JSON to `url` at train end. Retries connection errors
    and 5xx/429 answers with exponential backoff; gives up after `retries` retries
    with an error in the log (training is never failed by a report)."""

    def __init__(self, url, headers=None, retries=3, backoff_s=0.5, timeout_s=10.0):
        if not str(url).startswith(("http://", "https://")):
            raise ValueError(f"HttpReport url must be http(s)://..., got {url!r}")
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
                    log.error("hf-eco2ai: report to %s refused: HTTP %s", self.url, e.code)
                    return False
                reason = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                reason = str(e)
            if attempt < self.retries:
                time.sleep(self.backoff_s * (2**attempt))
        log.error("hf-eco2ai: report to %s failed after %d attempts: %s", self.url, self.retries + 1, reason)
        return False
