"""`python -m arrears_responses`: QUO webhooks, Gmail replies and the webhooks of installed inbound adapters
(entry points `arrears.inbound`) -> classified `reply-received`; consumes `message-sent`."""

from __future__ import annotations

import asyncio

from arrears_shared import topics
from arrears_shared.audit.views import audit_router
from arrears_shared.service import Consumer, ServiceDefinition
from arrears_shared.service import main as run
from arrears_shared.webhook_dedupe import DedupeTable, pruning_loop

from .autoreplies.calendars import team_calendar_handler
from .contacts.handlers import message_sent_handler
from .corrections.views import corrections_router
from .gmail.poller import make_gmail_loop
from .gmail.views import make_push_router
from .gmail.watch import make_watch_loop
from .inbound.adapters import inbound_router
from .intents.loop import intent_model_loop, intent_model_ready, load_active_model
from .intents.views import intents_router
from .replies.views import replies_router
from .settings import ResponsesSettings
from .webhooks.views import webhooks_router


def definition(settings: ResponsesSettings | None = None) -> ServiceDefinition:
    settings = settings or ResponsesSettings(service_name="responses")
    wake = asyncio.Event()  # a Gmail push wakes the poller
    return ServiceDefinition(
        name="responses",
        settings=settings,
        consumers=[
            Consumer(message_sent_handler(settings), topics=(topics.MESSAGE_SENT,)),
            Consumer(team_calendar_handler(), topics=(topics.TEAM_CALENDARS,)),
        ],
        routers=[
            webhooks_router,
            inbound_router,
            replies_router,
            corrections_router,
            intents_router,
            make_push_router(wake),
            audit_router,
        ],
        loops=[
            make_gmail_loop(wake),
            make_watch_loop(),
            intent_model_loop,
            pruning_loop(DedupeTable("webhook_events")),
        ],
        on_start=load_active_model,
        readiness={"intent_model": intent_model_ready},
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
