"""KPI targets are configuration (seed 001: coverage 100 %, automated notifications 85 %, recovery 40 %),
exposed by escalation's KPI API, and each KPI shows its status against its target on the console's KPI page
(met / near / missed, near = within the configured fraction of the target)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pytest
from arrears_console.web.upstream import Upstreams
from arrears_escalation.__main__ import definition
from arrears_escalation.collection.targets import KpiTarget, make_targets
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from console_web.support import console_host, settings
from sqlalchemy import text


def test_seed_targets_by_default_and_status_thresholds() -> None:
    t = {x.metric: x for x in Deps().targets}
    assert {m: x.target for m, x in t.items()} == {
        "days_in_arrears_coverage": 1.0,
        "automated_notification_rate": 0.85,
        "recovery_rate": 0.40,
    }
    rec = t["recovery_rate"]
    assert rec.near_at == pytest.approx(0.36) and rec.source == "seed"
    assert [rec.status(v) for v in (0.40, 0.55, 0.3999, 0.36, 0.3599, 0.0, None)] == [
        "met", "met", "near", "near", "missed", "missed", "no_data",
    ]  # fmt: skip
    cov = t["days_in_arrears_coverage"]
    assert [cov.status(v) for v in (1.0, 0.9, 0.89)] == ["met", "near", "missed"]


def test_targets_come_from_the_settings() -> None:
    s = EscalationSettings(
        database_url="postgresql://x/y",
        escalation_target_recovery_rate=0.5,
        escalation_kpi_targets='{"promise_fulfilment": 0.7}',
        escalation_kpi_near=0.2,
    )
    t = {x.metric: x for x in Deps.from_settings(s).targets}
    assert t["recovery_rate"].target == 0.5 and t["recovery_rate"].source == "configured"
    assert t["recovery_rate"].near_at == pytest.approx(0.4)
    assert t["promise_fulfilment"].target == 0.7 and t["automated_notification_rate"].target == 0.85
    with pytest.raises(ValueError, match="unknown metrics"):
        make_targets(1, 0.85, 0.4, '{"happiness": 1}')


D1, D2 = date(2026, 4, 1), date(2026, 4, 2)
SNAPSHOTS = [  # (day, scope, scope_id, metric, value, numerator, denominator)
    (D2, "overall", "all", "days_in_arrears_coverage", 1.0, 10, 10),  # met
    (D1, "overall", "all", "automated_notification_rate", 0.8, 8, 10),
    (D2, "overall", "all", "automated_notification_rate", 0.8, 8, 10),  # period 80 %: near (76.5-85)
    (D2, "overall", "all", "recovery_rate", 0.25, 25, 100),  # missed (< 36 %)
    (D2, "campaign", "spring", "recovery_rate", 0.5, 5, 10),  # met: no flag
    (D2, "campaign", "autumn", "recovery_rate", 0.1, 1, 10),  # missed
]


async def test_the_api_exposes_the_targets_and_the_kpi_page_shows_each_status(
    broker: Any, fresh_database_url: Callable[..., str]
) -> None:
    url = fresh_database_url("kpi_targets")
    esc_def = definition(EscalationSettings(**settings(broker, url, escalation_reports_enabled=False)))
    esc_def.consumers, esc_def.loops = [], []
    esc = ServiceHost(esc_def)
    esc_app = esc.build_app()
    await esc.start()
    try:
        assert esc.ctx is not None
        async with esc.ctx.engine.begin() as conn:
            await conn.execute(
                text(
                    """INSERT INTO escalation.metric_snapshots
                       (day, scope, scope_id, metric, value, numerator, denominator)
                       VALUES (:d, :s, :i, :m, :v, :n, :den)"""
                ),
                [dict(zip(("d", "s", "i", "m", "v", "n", "den"), r, strict=True)) for r in SNAPSHOTS],
            )
            viewer = await issue_key_async(conn, "viewer")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=esc_app), base_url="http://e") as ec:
            r = await ec.get("/collection-metrics/targets", headers=bearer(viewer))
            assert r.status_code == 200, r.text
            got = [KpiTarget.model_validate(x) for x in r.json()["targets"]]
            assert {x.metric: (x.target, round(x.near_at, 4)) for x in got} == {
                "days_in_arrears_coverage": (1.0, 0.9),
                "automated_notification_rate": (0.85, 0.765),
                "recovery_rate": (0.4, 0.36),
            }
            assert (await ec.get("/collection-metrics/targets")).status_code == 401

        async with console_host(broker, url) as (host, client):
            assert host.ctx is not None
            ups = Upstreams(
                {"escalation": "http://escalation"},
                httpx.AsyncClient(transport=httpx.ASGITransport(app=esc_app)),
            )
            host.ctx.extra["upstreams"] = ups
            try:
                page = await client.get(
                    "/kpis", params={"from": D1.isoformat(), "to": D2.isoformat()}, headers=bearer(viewer)
                )
            finally:
                await ups.close()
        assert page.status_code == 200, page.text
        html = page.text

        def row(label: str) -> str:
            m = re.search(rf'<th scope="row">{re.escape(label)}</th>(.*?)</tr>', html, re.S)
            assert m, label
            return m.group(1)

        cov, auto, rec = (
            row("Days-in-arrears coverage"),
            row("Automated notification rate"),
            row("Recovery rate"),
        )
        assert "kpi-met" in cov and "100.0%" in cov
        assert "kpi-near" in auto and "85.0%" in auto and "near from 76.5%" in auto
        assert "kpi-missed" in rec and "40.0%" in rec and "25.0%" in rec
        assert "no target" in row("Collection rate")
        assert "kpi-missed" in row("autumn") and "kpi-" not in row("spring")
    finally:
        await esc.stop()
