"""Local fakes of Alibaba Cloud SMS and Tencent Cloud SMS ``SendSms`` endpoints, reached by the
real SDKs through their endpoint settings: each checks the request's action and parameters
(and that it is signed) and answers in the provider's real response shape, chosen by the
phone number the request carries."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# what the fakes answer for a number (anything else: success)
THROTTLED = "13900000002"
INVALID = "1390000"
BAD_TEMPLATE = "13900000004"
BROKEN = "13900000005"  # an HTTP 5xx


@dataclass
class Seen:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    params: dict[str, Any]  # Aliyun: query + form fields; Tencent: the JSON body


@dataclass
class FakeProvider:
    """A threaded HTTP server; ``answer(seen) -> (status, body)`` decides the reply."""

    answer: Callable[[Seen], tuple[int, dict[str, Any]]]
    seen: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what a check found wrong

    def start(self) -> FakeProvider:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                url = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                params: dict[str, Any] = {k: v[0] for k, v in parse_qs(url.query).items()}
                ctype = headers.get("content-type", "")
                if "json" in ctype:
                    params.update(json.loads(raw or b"{}"))
                elif raw:
                    params.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
                seen = Seen(url.path, headers, params)
                fake.seen.append(seen)
                try:
                    status, doc = fake.answer(seen)
                except AssertionError as exc:
                    fake.problems.append(str(exc))
                    status, doc = 400, {"Code": "FakeCheckFailed", "Message": str(exc)}
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def aliyun_answer(seen: Seen) -> tuple[int, dict[str, Any]]:
    """Dysmsapi 2017-05-25 SendSms, RPC style, the parameters in the query, signed
    ACS3-HMAC-SHA256 (the action and version in ``x-acs-*`` headers)."""
    h, p = seen.headers, seen.params
    assert h.get("x-acs-action") == "SendSms", f"action {h.get('x-acs-action')}"
    assert h.get("x-acs-version") == "2017-05-25", f"version {h.get('x-acs-version')}"
    auth = h.get("authorization", "")
    assert auth.startswith("ACS3-HMAC-SHA256 Credential=LTAI-test-id,"), "not ACS3 signed"
    assert "Signature=" in auth and h.get("x-acs-signature-nonce"), "no signature"
    for name in ("PhoneNumbers", "SignName", "TemplateCode", "OutId"):
        assert p.get(name), f"no {name}"
    rid = "F655A8D5-B967-440B-8683-DAD6FF8DE990"
    phone = p["PhoneNumbers"]
    if phone == THROTTLED:
        msg = "触发号码天级流控Permits:10"
        return 200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": msg, "RequestId": rid}
    if phone == INVALID:
        msg = f"{phone}invalid"  # the provider echoes the number
        return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": msg, "RequestId": rid}
    if phone == BAD_TEMPLATE:
        msg = "模板不合法(不存在或被拉黑)"
        return 200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": msg, "RequestId": rid}
    if phone == BROKEN:
        msg = "The request has failed due to a temporary failure of the server."
        doc = {"RequestId": rid, "HostId": "dysmsapi.aliyuncs.com", "Code": "ServiceUnavailable"}
        return 503, doc | {"Message": msg, "Recommend": "https://api.aliyun.com/troubleshoot"}
    return 200, {"Code": "OK", "Message": "OK", "BizId": "9006197469364984^0", "RequestId": rid}


def tencent_answer(seen: Seen) -> tuple[int, dict[str, Any]]:
    """SMS 2021-01-11 SendSms, TC3-HMAC-SHA256 signed, a JSON body."""
    h, p = seen.headers, seen.params
    assert h.get("x-tc-action") == "SendSms", f"action {h.get('x-tc-action')}"
    assert h.get("x-tc-version") == "2021-01-11", f"version {h.get('x-tc-version')}"
    auth = h.get("authorization", "")
    assert auth.startswith("TC3-HMAC-SHA256 Credential=AKID-test/"), "not TC3 signed"
    assert "Signature=" in auth and h.get("x-tc-timestamp"), "no signature"
    assert p.get("SmsSdkAppId") == "1400006666", f"app {p.get('SmsSdkAppId')}"
    for name in ("SignName", "TemplateId", "SessionContext"):
        assert p.get(name), f"no {name}"
    [phone] = p["PhoneNumberSet"]
    rid = "a0aabda6-cf91-4f3e-a81f-9198114a2279"
    if phone == f"+86{BAD_TEMPLATE}":  # a request-level error
        err = {"Code": "AuthFailure.SecretIdNotFound", "Message": "The SecretId is not found"}
        return 200, {"Response": {"Error": err, "RequestId": rid}}
    if phone == f"+86{BROKEN}":
        return 502, {"message": "bad gateway"}
    code, msg, serial, fee = "Ok", "send success", "5000:1045710669157053657849499619", 1
    if phone == f"+86{THROTTLED}":
        code, msg, serial, fee = "LimitExceeded.PhoneNumberThirtySecondLimit", "", "", 0
        msg = "the number of sms messages sent to a mobile number within 30 seconds is too high"
    elif phone == f"+86{INVALID}" or phone == INVALID:
        code, msg, serial, fee = "InvalidParameterValue.IncorrectPhoneNumber", "", "", 0
        msg = f"incorrect phone number {phone}"
    status = {
        "SerialNo": serial,
        "PhoneNumber": phone,
        "Fee": fee,
        "SessionContext": p["SessionContext"],
        "Code": code,
        "Message": msg,
        "IsoCode": "CN",
    }
    return 200, {"Response": {"SendStatusSet": [status], "RequestId": rid}}
