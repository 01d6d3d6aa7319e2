"""SMS provider settings and error tables: which provider a setting picks, what it refuses,
and how each provider's answer codes map to retry / give up (the table docs/notify.md shows)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.notify.channels import PLUGS, DeliveryError, Outgoing, aliyun_sms, tencent_sms
from services.notify.channels.sms import Verdict, scrub, template_for
from services.notify.config import NotifySettings, SmsTemplateMap
from services.notify.domain.templates import Message
from tongxin.contracts.enums import NotifyChannel

DOCS = Path(__file__).resolve().parents[3] / "docs" / "notify.md"
SMS = PLUGS[NotifyChannel.SMS]


def test_the_gateway_stays_the_default_and_needs_its_url() -> None:
    assert not SMS.enabled(NotifySettings())
    s = NotifySettings(notify_sms_gateway_url="http://127.0.0.1:1/sms")
    assert s.notify_sms_provider == "gateway" and SMS.enabled(s)


def test_a_provider_needs_its_credentials() -> None:
    with pytest.raises(ValidationError, match="TONGXIN_NOTIFY_SMS_ACCESS_KEY_SECRET"):
        NotifySettings(notify_sms_provider="aliyun", notify_sms_access_key_id="LTAI-x")
    with pytest.raises(ValidationError, match="TONGXIN_NOTIFY_SMS_APP_ID"):
        NotifySettings(
            notify_sms_provider="tencent",
            notify_sms_access_key_id="AKID-x",
            notify_sms_access_key_secret="k",
        )
    with pytest.raises(ValidationError):
        NotifySettings(notify_sms_provider="twilio")
    s = NotifySettings(
        notify_sms_provider="aliyun",
        notify_sms_access_key_id="LTAI-x",
        notify_sms_access_key_secret="the-key-secret",
    )
    assert SMS.enabled(s)
    assert "the-key-secret" not in repr(s) and "the-key-secret" not in str(s.model_dump())


def test_tencent_parameters_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="SMS_TX_CASE_CLOSED"):
        NotifySettings(
            notify_sms_provider="tencent",
            notify_sms_access_key_id="AKID-x",
            notify_sms_access_key_secret="k",
            notify_sms_app_id="1400006666",
            notify_sms_templates={"SMS_TX_CASE_CLOSED": {"id": "123"}},
        )


def test_templates_map_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "TONGXIN_NOTIFY_SMS_TEMPLATES",
        '{"SMS_TX_CASE_CLOSED": {"id": "SMS_1", "params": {"rid": "id"}}}',
    )
    s = NotifySettings()
    assert s.notify_sms_templates == {
        "SMS_TX_CASE_CLOSED": SmsTemplateMap(id="SMS_1", params={"rid": "id"})
    }


def _out(code: str | None, params: dict[str, str]) -> Outgoing:
    return Outgoing("d", "n", "r", "r", {"phone": "13900000001"}, Message("t", "x", code, params))


def test_template_mapping() -> None:
    mapped = {
        "A": SmsTemplateMap(id="SMS_9", params=["id"]),
        "B": SmsTemplateMap(id="7", params={"2": "name", "1": "id"}),
        "C": SmsTemplateMap(id="SMS_8"),
    }
    ours = {"id": "YS-1", "name": "李"}
    assert template_for("p", mapped, _out("A", ours), mapped_only=True) == ("SMS_9", {"id": "YS-1"})
    tid, params = template_for("p", mapped, _out("B", ours), mapped_only=True)
    assert tid == "7" and list(params.values()) == ["李", "YS-1"]
    assert template_for("p", mapped, _out("C", ours), mapped_only=True) == ("SMS_8", ours)
    # Aliyun may take templates.yaml's code as its own; Tencent never guesses
    assert template_for("p", mapped, _out("D", ours), mapped_only=False) == ("D", ours)
    for code, only in (("D", True), ("A", True), (None, False)):
        params = ours if code != "A" else {"name": "李"}  # A's id is missing
        with pytest.raises(DeliveryError) as err:
            template_for("p", mapped, _out(code, params), mapped_only=only)
        assert not err.value.retryable


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", None, Verdict.RETRY),
        ("Throttling.User", 400, Verdict.RETRY),
        ("isp.SYSTEM_ERROR", None, Verdict.RETRY),
        ("isv.MOBILE_NUMBER_ILLEGAL", None, Verdict.REFUSED),
        ("isv.SOMETHING_NEW", None, Verdict.REFUSED),
        ("isv.SMS_SIGNATURE_ILLEGAL", None, Verdict.CONFIG),
        ("InvalidAccessKeyId.NotFound", 404, Verdict.CONFIG),
        ("SignatureDoesNotMatch", 400, Verdict.CONFIG),
        ("Unknown.Code", 503, Verdict.RETRY),
        ("Unknown.Code", 400, Verdict.REFUSED),
    ],
)
def test_aliyun_codes(code: str, status: int | None, expected: Verdict) -> None:
    assert aliyun_sms.verdict(code, status) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("LimitExceeded.PhoneNumberThirtySecondLimit", Verdict.RETRY),
        ("LimitExceeded.DeliveryFrequencyLimit", Verdict.RETRY),
        ("RequestLimitExceeded.UinLimitExceeded", Verdict.RETRY),
        ("InternalError.Timeout", Verdict.RETRY),
        ("LimitExceeded.PhoneNumberDailyLimit", Verdict.REFUSED),
        ("InvalidParameterValue.IncorrectPhoneNumber", Verdict.REFUSED),
        ("FailedOperation.PhoneNumberInBlacklist", Verdict.REFUSED),
        ("FailedOperation.SignatureIncorrectOrUnapproved", Verdict.CONFIG),
        ("FailedOperation.TemplateIncorrectOrUnapproved", Verdict.CONFIG),
        ("AuthFailure.SignatureFailure", Verdict.CONFIG),
        ("UnauthorizedOperation.ServiceSuspendDueToArrears", Verdict.CONFIG),
        ("LimitExceeded.AppDailyLimit", Verdict.CONFIG),
    ],
)
def test_tencent_codes(code: str, expected: Verdict) -> None:
    assert tencent_sms.verdict(code) is expected


def test_tencent_numbers_in_e164() -> None:
    assert tencent_sms.e164("13900000001") == "+8613900000001"
    assert tencent_sms.e164("8613900000001") == "+8613900000001"
    assert tencent_sms.e164("008613900000001") == "+8613900000001"
    assert tencent_sms.e164("+85291234567") == "+85291234567"


def test_provider_messages_lose_the_number() -> None:
    assert scrub("13900000001 invalid", "13900000001") == "*** invalid"
    assert scrub("incorrect phone number +8613900000001") == "incorrect phone number ***"
    assert scrub("request F655A8D5-B967-440B") == "request F655A8D5-B967-440B"


@pytest.mark.parametrize("module", [aliyun_sms, tencent_sms], ids=["aliyun", "tencent"])
def test_docs_show_each_provider_table(module: object) -> None:
    """docs/notify.md lists every code of a provider's table with its verdict."""
    text = DOCS.read_text(encoding="utf-8")
    table: dict[str, Verdict] = module.ERRORS  # type: ignore[attr-defined]
    prefixes: tuple[tuple[str, Verdict], ...] = module.PREFIXES  # type: ignore[attr-defined]
    for verdict in Verdict:
        row = re.search(rf"^\| {module.PROVIDER} \| {verdict.value} \| (.*) \|$", text, re.M)  # type: ignore[attr-defined]
        assert row, f"no {verdict.value} row for {module.PROVIDER}"  # type: ignore[attr-defined]
        listed = set(re.findall(r"`([^`]+)`", row.group(1)))
        want = {c for c, v in table.items() if v is verdict}
        want |= {f"{p}*" for p, v in prefixes if v is verdict}
        assert listed == want, (verdict, sorted(listed ^ want))


def test_the_service_starts_without_the_sdks_when_the_gateway_is_used() -> None:
    """The SDKs are imported only when their provider is chosen."""
    code = (
        "import sys\n"
        "from services.notify import app\n"
        "from services.notify.channels import PLUGS\n"
        "from services.notify.config import NotifySettings\n"
        "from tongxin.contracts.enums import NotifyChannel\n"
        "import httpx\n"
        "s = NotifySettings(notify_sms_gateway_url='http://127.0.0.1:1/sms')\n"
        "PLUGS[NotifyChannel.SMS].build(s, lambda c: httpx.AsyncClient())\n"
        "sdks = [m for m in sys.modules if m.startswith(('alibabacloud', 'tencentcloud'))]\n"
        "assert not sdks, sdks\n"
    )
    root = Path(__file__).resolve().parents[3]
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
