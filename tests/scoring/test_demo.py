"""`arrears up`'s demo: with no model and no history of its own, the scoring loop trains a model on
simulated customers (stored as `simulated`) and then runs the day, once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from arrears_scoring.__main__ import definition
from arrears_scoring.settings import ScoringSettings
from arrears_shared.service import ServiceHost
from sqlalchemy import text


async def test_demo_model_then_one_run_per_day(broker: Any, fresh_database_url: Callable[..., str]) -> None:
    settings = ScoringSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("scoring_demo"),
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.05,
        scoring_demo_model=True,
        scoring_demo_accounts=600,
        scoring_run_hour_utc=0,
        scoring_check_every_s=0.3,
    )
    host = ServiceHost(definition(settings))
    host.build_app()
    await host.start()
    try:
        assert host.ctx is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            async with host.ctx.engine.connect() as c:
                models = (await c.execute(text("SELECT kind, source, active FROM scoring.models"))).all()
                runs = (await c.execute(text("SELECT day, run_by FROM scoring.runs"))).all()
            if runs:
                break
            await asyncio.sleep(0.3)
        assert sorted((m.kind, m.source, m.active) for m in models) == [
            ("dropout", "simulated", True),
            ("pay14", "simulated", True),
            ("recovery", "simulated", True),
        ]
        assert [(r.day, r.run_by) for r in runs] == [(datetime.now(UTC).date(), "schedule")]
        await asyncio.sleep(1.0)  # more checks of the loop: still one run, no second training
        async with host.ctx.engine.connect() as c:
            assert (await c.execute(text("SELECT count(*) FROM scoring.runs"))).scalar() == 1
            assert (await c.execute(text("SELECT count(*) FROM scoring.models"))).scalar() == 3
    finally:
        await host.stop()
