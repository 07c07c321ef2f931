"""Scoring's own metrics (beside the shared consumer, relay and HTTP metrics on /metrics)."""

from prometheus_client import Counter, Gauge

RUNS = Counter("arrears_scoring_runs_total", "Daily scoring runs committed (one per UTC day across replicas)")
SCORED = Counter("arrears_scoring_scores_total", "Scores written and published by the daily runs")
LAST_RUN = Gauge(
    "arrears_scoring_last_run_timestamp_seconds",
    "When the latest daily scoring run was committed, by any replica (Unix time; read from the database at "
    "each check, so every replica reports it; 0 before the first run)",
)
TRAINED = Counter(
    "arrears_scoring_models_trained_total",
    "Model versions stored, by kind and whether activated",
    ["kind", "activated"],
)
ACTIVE_AUC = Gauge(
    "arrears_scoring_model_auc", "Test-window AUC of the model this replica last activated, by kind", ["kind"]
)
