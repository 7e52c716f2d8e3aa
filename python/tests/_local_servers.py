"""Local stand-ins for the guide's remote services, on 127.0.0.1: a carbon-accounting
API that fails the first N requests, and an AWS Cost Explorer that checks SigV4."""

import datetime
import hashlib
import hmac
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer


class _Base:
    def _serve(self, handler):
        self.httpd = HTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class AccountingAPI(_Base):
    """Answers `status` to the first `fail` POSTs, then 201; keeps what it accepted."""

    def __init__(self, fail=0, status=503):
        self.calls, self.received, self.requests = 0, [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.calls += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                # Header names lower-cased: HTTP compares them case-insensitively.
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append({"path": self.path, "headers": headers, "body": body})
                code = status if outer.calls <= fail else 201
                if code == 201:
                    outer.received.append(json.loads(body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._serve(Handler)


def _sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def verify_sigv4(method, path, headers, body, secrets, now=None, scope=("us-east-1", "ce")):
    """None if the request's Authorization is a valid SigV4 signature by a key in
    `secrets` ({access key id: secret}), else why not. Written apart from the
    package's signer, from the published algorithm."""
    auth = headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no AWS4-HMAC-SHA256 Authorization"
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    key_id, date, region, service, terminal = fields["Credential"].split("/")
    if key_id not in secrets or terminal != "aws4_request":
        return "unknown access key"
    if (region, service) != scope:
        return f"credential scope {region}/{service}, expected {'/'.join(scope)}"
    amz_date = headers.get("X-Amz-Date", "")
    when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if abs((now - when).total_seconds()) > 300 or amz_date[:8] != date:
        return "request time out of range"
    names = fields["SignedHeaders"].split(";")
    lower = {k.lower(): v for k, v in headers.items()}
    if "host" not in names or "x-amz-date" not in names:
        return "host and x-amz-date must be signed"
    split = urllib.parse.urlsplit(path)
    query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
    )
    creq = "\n".join([
        method, split.path or "/", query,
        "".join(f"{n}:{' '.join(lower[n].split())}\n" for n in names),
        ";".join(names), _sha256_hex(body),
    ])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{date}/{region}/{service}/aws4_request",
                     _sha256_hex(creq.encode())])
    k = ("AWS4" + secrets[key_id]).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(want, fields["Signature"]) else "signature does not match"


class CostExplorer(_Base):
    """GetCostAndUsage over the AWS JSON 1.1 protocol: checks the target, content type
    and SigV4 signature (403 InvalidSignatureException otherwise) and answers the
    daily UnblendedCost amounts given, one ResultsByTime entry per day."""

    def __init__(self, secrets, daily_amounts):
        self.requests, self.rejected = [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers)
                why = None
                if headers.get("X-Amz-Target") != "AWSInsightsIndexService.GetCostAndUsage":
                    why = "UnknownOperationException"
                elif headers.get("Content-Type") != "application/x-amz-json-1.1":
                    why = "SerializationException"
                else:
                    why = verify_sigv4("POST", self.path, headers, body, secrets)
                if why:
                    outer.rejected.append(why)
                    return self._answer(403, {"__type": "InvalidSignatureException", "message": why})
                req = json.loads(body)
                outer.requests.append({"headers": headers, "body": req})
                start = datetime.date.fromisoformat(req["TimePeriod"]["Start"])
                results = []
                for i, amount in enumerate(daily_amounts):
                    day = start + datetime.timedelta(days=i)
                    results.append({
                        "TimePeriod": {"Start": day.isoformat(), "End": (day + datetime.timedelta(days=1)).isoformat()},
                        "Total": {m: {"Amount": str(amount), "Unit": "USD"} for m in req["Metrics"]},
                        "Groups": [], "Estimated": True,
                    })
                self._answer(200, {"ResultsByTime": results, "DimensionValueAttributes": []})

            def _answer(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._serve(Handler)
