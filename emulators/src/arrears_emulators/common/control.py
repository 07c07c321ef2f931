"""The control API every emulator serves under ``/_emulator/`` (never rate limited or faulted)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from arrears_emulators.common.core import CONTROL_PREFIX, EmulatorCore, StatsMiddleware, StatsView
from arrears_emulators.common.faults import FaultsUpdate, FaultsView
from arrears_emulators.common.ledger import LedgerView
from arrears_emulators.common.ratelimit import LimitsConfig, LimitsUpdate


def control_router(core: EmulatorCore) -> APIRouter:
    router = APIRouter(prefix=CONTROL_PREFIX, tags=["emulator control"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "emulator": core.name}

    @router.get("/ledger", response_model=LedgerView)
    async def ledger(
        recipient: str | None = None, notice_id: str | None = None, since_seq: int = 0
    ) -> LedgerView:
        return core.ledger.view(recipient=recipient, notice_id=notice_id, since_seq=since_seq)

    @router.post("/reset")
    async def reset() -> dict[str, str]:
        await core.reset()
        return {"status": "reset"}

    @router.get("/faults", response_model=FaultsView)
    async def get_faults() -> FaultsView:
        return core.faults.view()

    @router.post("/faults", response_model=FaultsView)
    async def set_faults(update: FaultsUpdate) -> FaultsView:
        core.faults.update(update)
        return core.faults.view()

    @router.delete("/faults", response_model=FaultsView)
    async def clear_faults() -> FaultsView:
        core.faults.clear()
        return core.faults.view()

    @router.get("/stats", response_model=StatsView)
    async def stats() -> StatsView:
        return core.stats_view()

    @router.get("/limits", response_model=LimitsConfig)
    async def get_limits() -> LimitsConfig:
        return core.limits

    @router.put("/limits", response_model=LimitsConfig)
    async def put_limits(update: LimitsUpdate) -> LimitsConfig:
        return core.limiter.update(update)

    return router


def install_control(app: FastAPI, core: EmulatorCore) -> None:
    """Mount the control API and the status-counting middleware on an emulator app."""
    app.include_router(control_router(core))
    app.add_middleware(StatsMiddleware, core=core)
    app.state.emulator_core = core
