"""The job's compute cost from AWS Cost Explorer (GetCostAndUsage), signed with AWS
Signature Version 4 using hashlib/hmac only (no boto3).

Cost Explorer is answered by https://ce.us-east-1.amazonaws.com (the service lives in
us-east-1 whatever the job's region); its data lag by up to a day, so the cost of a job
that just ended may be partial: the cost breakdown says which source and period it used.
"""

import datetime
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request

from .report import set_compute_cost

log = logging.getLogger("hf_eco2ai")

TARGET = "AWSInsightsIndexService.GetCostAndUsage"
CONTENT_TYPE = "application/x-amz-json-1.1"


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(text, safe="-_.~"):
    return urllib.parse.quote(text, safe=safe)


def _canonical_query(query):
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(pairs))


def sigv4_sign(method, url, headers, body, access_key_id, secret_access_key, region, service, amz_date,
               session_token=None):
    """The headers to add to a request for AWS Signature Version 4: X-Amz-Date,
    X-Amz-Security-Token (with a session token) and Authorization. `headers` are the
    request's other headers (Host is taken from the URL when absent); every header
    given is signed. `amz_date` is YYYYMMDD'T'HHMMSS'Z' (UTC)."""
    parts = urllib.parse.urlsplit(url)
    signed = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    signed.setdefault("host", parts.netloc)
    signed["x-amz-date"] = amz_date
    if session_token:
        signed["x-amz-security-token"] = session_token
    names = sorted(signed)
    payload = body if isinstance(body, bytes) else (body or "").encode()
    canonical_request = "\n".join([
        method.upper(),
        _uri_encode(parts.path or "/", safe="/-_.~"),
        _canonical_query(parts.query),
        "".join(f"{n}:{signed[n]}\n" for n in names),
        ";".join(names),
        hashlib.sha256(payload).hexdigest(),
    ])
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest(),
    ])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_access_key).encode(), date), region), service), "aws4_request")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    out = {
        "X-Amz-Date": amz_date,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        ),
    }
    if session_token:
        out["X-Amz-Security-Token"] = session_token
    return out


class AWSCostExplorer:
    """Reads the job's compute cost (GetCostAndUsage, `metric`, default UnblendedCost)
    over the run's days and puts it in the run summary's cost breakdown
    (cost.compute_usd, cost.compute_source "aws-cost-explorer ...").

    Which costs are the job's: `cost_filter` (a Cost Explorer Expression, e.g.
    {"Tags": {"Key": "job", "Values": ["bert-ft-42"]}}); by default the costs in
    `region` (the job's region, dimension REGION) carrying the cost allocation tag
    `tag_key` (default "Project") equal to the run's project_name. Requests are signed
    for us-east-1, where Cost Explorer lives.
    The secret is used only to sign; it is never sent, logged or written."""

    def __init__(self, access_key_id, secret_access_key, region="us-east-1", endpoint_url=None,
                 session_token=None, cost_filter=None, tag_key="Project", metric="UnblendedCost",
                 timeout_s=10.0, retries=2, backoff_s=0.5):
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self._session_token = session_token
        self.region = region
        # Cost Explorer has one endpoint, in us-east-1, whatever region the job ran in.
        self.signing_region = "us-east-1"
        self.endpoint_url = endpoint_url or "https://ce.us-east-1.amazonaws.com/"
        self.cost_filter = cost_filter
        self.tag_key = tag_key
        self.metric = metric
        self.timeout_s, self.retries, self.backoff_s = float(timeout_s), int(retries), float(backoff_s)

    def __repr__(self):
        return f"AWSCostExplorer({self.access_key_id!r}, '***', {self.region!r}, endpoint_url={self.endpoint_url!r})"

    def request_body(self, start_date, end_date, project=None):
        """The GetCostAndUsage request: DAILY cost of [start_date, end_date) (dates, end exclusive)."""
        body = {
            "TimePeriod": {"Start": start_date.isoformat(), "End": end_date.isoformat()},
            "Granularity": "DAILY",
            "Metrics": [self.metric],
        }
        flt = self.cost_filter
        if flt is None:
            parts = [{"Dimensions": {"Key": "REGION", "Values": [self.region]}}] if self.region else []
            if project is not None:
                parts.append({"Tags": {"Key": self.tag_key, "Values": [project], "MatchOptions": ["EQUALS"]}})
            flt = {"And": parts} if len(parts) > 1 else (parts[0] if parts else None)
        if flt is not None:
            body["Filter"] = flt
        return body

    def get_cost_and_usage(self, body, now=None):
        """POSTs one signed GetCostAndUsage request; returns the decoded response."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET}
        last = None
        for attempt in range(self.retries + 1):
            amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            signed = sigv4_sign("POST", self.endpoint_url, headers, data, self.access_key_id, self._secret,
                                self.signing_region, "ce", amz_date, self._session_token)
            req = urllib.request.Request(self.endpoint_url, data=data, headers={**headers, **signed}, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode(errors="replace")
                last = f"HTTP {e.code}: {detail}"
                if e.code < 500 and e.code != 429:
                    break
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = str(e)
            if attempt < self.retries:
                time.sleep(self.backoff_s * (2**attempt))
        raise RuntimeError(f"Cost Explorer GetCostAndUsage at {self.endpoint_url} failed: {last}")

    def cost(self, start_date, end_date, project=None):
        """(amount, unit) summed over ResultsByTime[].Total[metric]."""
        answer = self.get_cost_and_usage(self.request_body(start_date, end_date, project))
        amount, unit = 0.0, None
        for period in answer.get("ResultsByTime", []):
            metric = period.get("Total", {}).get(self.metric)
            if metric:
                amount += float(metric["Amount"])
                unit = metric.get("Unit", unit)
        return amount, unit

    def enrich(self, summary):
        """Puts the compute cost from Cost Explorer into `summary`'s cost breakdown."""
        start = _date(summary.get("start"))
        end = _date(summary.get("end")) + datetime.timedelta(days=1)
        try:
            amount, unit = self.cost(start, end, summary.get("project_name"))
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            log.error("hf-eco2ai: compute cost from AWS Cost Explorer unavailable: %s", e)
            return summary
        if unit not in (None, "USD"):
            log.error("hf-eco2ai: Cost Explorer answered in %s, not USD; compute cost left out", unit)
            return summary
        source = f"aws-cost-explorer {self.metric} {start.isoformat()}..{end.isoformat()}"
        set_compute_cost(summary, amount, source)
        return summary


def _date(rfc3339):
    if not rfc3339:
        return datetime.datetime.now(datetime.timezone.utc).date()
    return datetime.date.fromisoformat(str(rfc3339)[:10])
