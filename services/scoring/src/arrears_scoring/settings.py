"""Scoring settings (all `ARREARS_*` variables; the service's own are `ARREARS_SCORING_*`)."""

from __future__ import annotations

from arrears_shared.settings import ServiceSettings
from pydantic import Field


class ScoringSettings(ServiceSettings):
    service_name: str = "scoring"
    http_port: int = 8095

    scoring_run_hour_utc: int = Field(
        2,
        ge=0,
        le=23,
        description="The daily scoring run happens once per UTC day, at the first check at or after this hour "
        "(whichever replica gets there first)",
    )
    scoring_check_every_s: float = Field(
        60.0, gt=0, description="How often the scoring loop checks whether a run or a training is due"
    )
    scoring_start_delay_s: float = Field(
        0.0,
        ge=0,
        description="Wait this long after start before the first check (`arrears up` waits for the demo "
        "sheet's accounts to arrive before the day's run)",
    )
    scoring_retrain_every_days: int = Field(
        7,
        ge=0,
        description="Train new models on the service's own history this often (0: only on request, "
        "`POST /models/train`); a new model is activated only if it beats the active one",
    )
    scoring_training_retry_s: float = Field(
        3600.0,
        gt=0,
        description="After a training found too little history, wait this long before this replica tries "
        "again (each try reads the whole history)",
    )
    scoring_demo_model: bool = Field(
        False,
        description="With no active model and too little history of its own, train on simulated customers "
        "(models stored with source `simulated`, clearly a demo; `arrears up` sets it). Never in production",
    )
    scoring_demo_accounts: int = Field(
        5000, ge=200, le=200_000, description="Simulated customers a demo model is trained on"
    )
    scoring_reasons: int = Field(3, ge=0, le=5, description="Top reasons published with each score")
