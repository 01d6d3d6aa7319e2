"""zh-CN message templates (Jinja2), per event and channel, from ``templates.yaml``.

In strict mode (everything but production) a missing variable is an error; in production
it renders empty so one sloppy template does not silence a whole event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from services.notify.domain.quiet import SHANGHAI
from tongxin.contracts.enums import CATEGORY_NAMES_ZH, Category, NotifyChannel, labels_zh

NAMES_ZH = labels_zh()  # tiers, skills, care types, levels, ratings: one place for all


class TemplateError(ValueError):
    """A template is missing, does not compile, or lacks a variable (strict mode)."""


class SmsTemplate(BaseModel):
    """An SMS template registered with the provider: its code and the parameters to fill."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1)
    params: dict[str, str] = Field(default_factory=dict)


class TemplateSpec(BaseModel):
    """One template: a title, the plain text, and optional per-channel variants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    text: str
    markdown: str | None = None  # WeCom / DingTalk robots
    email: str | None = None  # the email body (the subject is the title)
    sms: SmsTemplate | None = None


class TemplatesFile(BaseModel):
    """The shape of ``templates.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: dict[str, TemplateSpec]


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message for one channel."""

    title: str
    text: str
    sms_code: str | None = None
    sms_params: Mapping[str, str] = field(default_factory=dict)

    def as_doc(self) -> dict[str, Any]:
        """How the message is stored with its delivery."""
        return {
            "title": self.title,
            "text": self.text,
            "sms_code": self.sms_code,
            "sms_params": dict(self.sms_params),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Message:
        """The stored message back."""
        return cls(
            title=str(doc.get("title", "")),
            text=str(doc.get("text", "")),
            sms_code=doc.get("sms_code"),
            sms_params=dict(doc.get("sms_params") or {}),
        )


def cn_time(value: Any) -> str:
    """A datetime (or ISO string) as Beijing time, e.g. ``2025年05月01日 14:00``."""
    if value is None or value == "":
        return ""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(dt, datetime):
        return str(value)
    return dt.astimezone(SHANGHAI).strftime("%Y年%m月%d日 %H:%M")


def category_zh(value: Any) -> str:
    """A category code in Chinese."""
    try:
        return CATEGORY_NAMES_ZH[Category(str(value))]
    except ValueError:
        return str(value)


class Templates:
    """Compiled templates; ``render`` gives the message for one channel."""

    def __init__(
        self,
        doc: Mapping[str, Any],
        *,
        strict: bool = True,
        unit_name: Any = None,
    ) -> None:
        self.specs = TemplatesFile.model_validate(doc).templates
        self.strict = strict
        self.env = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined if strict else jinja2.ChainableUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            cn_time=cn_time,
            tier_zh=lambda v: NAMES_ZH["tier"].get(str(v), str(v)),
            skill_zh=lambda v: NAMES_ZH["skill"].get(str(v), str(v)),
            care_zh=lambda v: NAMES_ZH["care"].get(str(v), str(v)),
            level_zh=lambda v: NAMES_ZH["level"].get(str(v), str(v)),
            rating_zh=lambda v: NAMES_ZH["rating"].get(str(v), str(v)),
            category_zh=category_zh,
            unit_name=unit_name or (lambda v: str(v)),
            unit_names=lambda vs: "、".join((unit_name or str)(v) for v in vs or []),
        )
        self._compiled: dict[str, jinja2.Template] = {}
        for name, spec in self.specs.items():
            parts: dict[str, str | None] = {
                "title": spec.title,
                "text": spec.text,
                "markdown": spec.markdown,
                "email": spec.email,
            }
            if spec.sms:
                parts.update({f"sms.{k}": v for k, v in spec.sms.params.items()})
            for part, source in parts.items():
                if source is None:
                    continue
                try:
                    self._compiled[f"{name}/{part}"] = self.env.from_string(source)
                except jinja2.TemplateSyntaxError as exc:
                    raise TemplateError(f"template {name}/{part}: {exc}") from exc

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def has_markdown(self, name: str) -> bool:
        """Whether robots get a markdown variant of this template."""
        spec = self.specs.get(name)
        return spec is not None and spec.markdown is not None

    def supports(self, name: str, channel: NotifyChannel) -> bool:
        """SMS needs a registered template code; every other channel takes any template."""
        spec = self.specs.get(name)
        if spec is None:
            return False
        return channel is not NotifyChannel.SMS or spec.sms is not None

    def _render(self, key: str, variables: Mapping[str, Any], *, one_line: bool = True) -> str:
        """Render a part; plain parts join their lines (zh-CN text has no spaces at breaks)."""
        try:
            out = self._compiled[key].render(**variables).strip()
            return "".join(ln.strip() for ln in out.splitlines()) if one_line else out
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {key}: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {key}: {exc}") from exc

    def render(self, name: str, channel: NotifyChannel, variables: Mapping[str, Any]) -> Message:
        """The message of template ``name`` for ``channel``."""
        spec = self.specs.get(name)
        if spec is None:
            raise TemplateError(f"no template named {name!r}")
        title = self._render(f"{name}/title", variables)
        if channel in (NotifyChannel.WECOM, NotifyChannel.DINGTALK) and spec.markdown:
            text = self._render(f"{name}/markdown", variables, one_line=False)
        elif channel is NotifyChannel.EMAIL and spec.email:
            text = self._render(f"{name}/email", variables, one_line=False)
        else:
            text = self._render(f"{name}/text", variables)
        if channel is NotifyChannel.SMS:
            if spec.sms is None:
                raise TemplateError(f"template {name!r} has no SMS template code")
            params = {k: self._render(f"{name}/sms.{k}", variables) for k in spec.sms.params}
            return Message(title, text, spec.sms.code, params)
        return Message(title, text)
