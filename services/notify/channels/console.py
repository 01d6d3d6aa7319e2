"""The development channel: the service log.

The text greets people by name, so it is logged only in development (``tongxin up``);
elsewhere the log line says who got which message, and the text stays in the delivery
record (``GET /v1/notifications``). A console delivery is recorded sent with its plan and
written to the log once that committed (:meth:`ConsoleSender.write`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from services.notify.channels.base import ChannelSender, ClientFor, Outgoing, Plug
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings

log = logging.getLogger("services.notify.channels")


class ConsoleSender:
    """Writes the message to the service log."""

    channel = NotifyChannel.CONSOLE

    def __init__(self, show_text: bool = False) -> None:
        self.show_text = show_text

    def write(self, out: Outgoing) -> None:
        """The log line (synchronous: written right after the plan's commit)."""
        extra: dict[str, str] = {"recipient": out.recipient}
        if self.show_text:
            extra |= {"title": out.message.title, "text": out.message.text}
        log.info("console notification", extra=extra)

    async def send(self, out: Outgoing) -> str | None:
        self.write(out)
        return None


def _build(s: NotifySettings, _client: ClientFor) -> ChannelSender:
    return ConsoleSender(show_text=s.env == "development")


PLUG = Plug(NotifyChannel.CONSOLE, lambda s: s.notify_console, _build)
