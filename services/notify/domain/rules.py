"""Who hears about which event, over which channel, and what the message says (zh-CN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tongxin.contracts.enums import NotifyChannel

STAFF_WEBHOOK = "staff:webhook"

TIER_ZH = {"routine": "常规事项", "general": "一般事项", "major": "重大事项", "special": "特定事项"}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to one recipient over one channel."""

    recipient: str
    channel: NotifyChannel
    text: str


def _routed_text(d: dict[str, Any]) -> str:
    units = "、".join(d.get("units", []))
    tier = TIER_ZH.get(d.get("tier", ""), d.get("tier", ""))
    return (
        f"【同心】诉求 {d['request_id']} 已分派（{tier}），承办单位：{units}；"
        f"请于 {d.get('acknowledge_by', '')} 前响应。分类依据：{d['classification']['reason']}"
    )


def _offered_text(d: dict[str, Any]) -> str:
    return (
        f"【同心】志愿任务 {d['task_id']}（诉求 {d['request_id']}）已派给红马甲志愿者"
        f" {d['volunteer_name']}，请于 {d['accept_by']} 前接单。"
    )


def _unmatched_text(d: dict[str, Any]) -> str:
    return f"【同心】诉求 {d['request_id']} 的志愿任务暂无合适志愿者，请社区协调。"


def deliveries_for(event_type: str, data: dict[str, Any], webhook: bool) -> list[Delivery]:
    """The deliveries an event calls for (empty when nobody needs to hear of it)."""
    out: list[Delivery] = []
    if event_type == "case.routed":
        if webhook:
            out.append(Delivery(STAFF_WEBHOOK, NotifyChannel.WEBHOOK, _routed_text(data)))
    elif event_type == "task.offered":
        text = _offered_text(data)
        out.append(Delivery(f"volunteer:{data['volunteer_id']}", NotifyChannel.CONSOLE, text))
        if webhook:
            out.append(Delivery(STAFF_WEBHOOK, NotifyChannel.WEBHOOK, text))
    elif event_type == "task.unmatched" and webhook:
        out.append(Delivery(STAFF_WEBHOOK, NotifyChannel.WEBHOOK, _unmatched_text(data)))
    return out
