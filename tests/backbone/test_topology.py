"""The declared topology: each service's `topology.py` is the one map of topics, and code cannot leave it."""

from __future__ import annotations

import pytest
from arrears_shared import topics, topology
from arrears_shared.service import Consumer, ServiceDefinition, ServiceHost
from arrears_shared.settings import ServiceSettings
from arrears_shared.stream.transaction import Transaction
from arrears_shared.topology import LagScaling, ServiceTopology, TopologyError


async def _noop(events, tx):  # type: ignore[no-untyped-def]
    return None


def test_every_service_declares_itself_and_the_declarations_agree() -> None:
    assert topology.services() == (
        "ingest",
        "segmenter",
        "dispatcher-sms",
        "dispatcher-email",
        "dispatcher-whatsapp",
        "responses",
        "scoring",
        "escalation",
        "portal",
        "console",
    )
    assert topology.problems() == []
    for name, t in topology.declared().items():
        assert t.package == "arrears_" + name.replace("-", "_")
        assert t.dead_letter_topics == tuple(f"{c}.{name}.dlq" for c in t.consumes)
    # the dispatchers read their own outcomes (a bounce marks an address invalid): their DLQ exists
    assert "message-sent.dispatcher-sms.dlq" in topology.all_topics()
    assert len(topology.all_topics()) == len(set(topology.all_topics()))


def test_a_declaration_is_checked_when_it_is_made() -> None:
    with pytest.raises(TopologyError, match="unknown topics"):
        ServiceTopology(name="x-svc", summary="", consumes=("no-such-topic",))
    with pytest.raises(TopologyError, match="twice"):
        ServiceTopology(name="x-svc", summary="", produces=(topics.NOTICE_DUE, topics.NOTICE_DUE))
    with pytest.raises(TopologyError, match="DNS label"):
        ServiceTopology(name="X_svc", summary="")
    with pytest.raises(TopologyError, match="consumes nothing"):
        ServiceTopology(name="x-svc", summary="", scaling=LagScaling(1, 2, 10))
    with pytest.raises(TopologyError, match="range"):
        LagScaling(3, 2, 10)


def test_what_a_service_may_write() -> None:
    sms = topology.service("dispatcher-sms")
    assert sms.may_write(topics.MESSAGE_SENT)
    assert sms.may_write("notice-due.dispatcher-sms.dlq")
    assert sms.may_write("notice-due.dispatcher-sms-replica-b.dlq")  # the same service under another group
    assert not sms.may_write(topics.ACCOUNT_CHANGED)
    assert not sms.may_write("overrides.dispatcher-sms.dlq")  # it does not consume overrides
    assert not sms.may_write("notice-due.a.b.dlq")
    console = topology.service("console")
    assert console.may_write(topics.ACCOUNT_CHANGED)  # a replay goes back to the source topic
    with pytest.raises(TopologyError, match="does not declare"):
        topology.check_write("segmenter", topics.MESSAGE_SENT)
    topology.check_write("segmenter", topics.NOTICE_DUE)
    topology.check_write("a-benchmark", topics.MESSAGE_SENT)  # not a declared service: not held to a map


def _definition(name: str, consumers: list[Consumer]) -> ServiceDefinition:
    return ServiceDefinition(name=name, settings=ServiceSettings(service_name=name), consumers=consumers)


def test_the_host_takes_a_services_topics_from_its_declaration_and_refuses_others() -> None:
    host = ServiceHost(_definition("escalation", [Consumer(_noop)]))
    assert list(host.consumers[0].topics or ()) == list(topology.service("escalation").consumes)
    with pytest.raises(TopologyError, match="declares"):
        ServiceHost(_definition("escalation", [Consumer(_noop, topics=[topics.ACCOUNT_CHANGED])]))
    with pytest.raises(TopologyError, match="declares"):
        ServiceHost(
            _definition("responses", [Consumer(_noop, topics=[topics.MESSAGE_SENT, topics.OVERRIDES])])
        )
    # a service with no declaration (a test's own) must name its topics
    with pytest.raises(TopologyError, match="must name topics"):
        ServiceHost(_definition("some-test-svc", [Consumer(_noop)]))
    assert ServiceHost(_definition("some-test-svc", [Consumer(_noop, topics=["x"])])).consumers[0].topics == [
        "x"
    ]


async def test_a_transaction_refuses_an_event_its_service_does_not_declare(database_url: str) -> None:
    from arrears_shared.db.engine import make_engine
    from arrears_shared.events import CaseEscalated, utcnow

    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            tx = Transaction(conn, "segmenter", "segmenter")
            tx.emit(
                CaseEscalated(
                    account_id="A1",
                    case_id="c1",
                    reason="dispute",
                    priority="high",
                    detail="",
                    opened_at=utcnow(),
                )
            )
            with pytest.raises(TopologyError, match="segmenter wrote to 'case-escalated'"):
                await tx.flush()
    finally:
        await engine.dispose()
