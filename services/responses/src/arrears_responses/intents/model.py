"""A trained intent model as plain arrays, scored with numpy: vocabulary, idf weights, one weight row per
intent, intercepts and a calibration temperature. Saved as an `.npz` (no pickle: loading a model never runs
code) with its metadata (version, corpus hash, metrics) as JSON beside it."""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from arrears_shared.events import Intent


@dataclass(eq=False)
class IntentModel:
    vocabulary: dict[str, int]
    idf: np.ndarray  # (n_features,)
    weights: np.ndarray  # (n_features, n_classes)
    intercept: np.ndarray  # (n_classes,)
    classes: tuple[Intent, ...]
    temperature: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unversioned"))

    def logits(self, feats: list[str]) -> np.ndarray:
        """Raw decision scores, exactly as scikit-learn's TfidfVectorizer(sublinear_tf) + linear model."""
        idx: list[int] = []
        vals: list[float] = []
        for f, n in Counter(feats).items():
            i = self.vocabulary.get(f)
            if i is not None:
                idx.append(i)
                vals.append((1.0 + math.log(n)) * float(self.idf[i]))
        if not idx:
            return self.intercept.copy()
        v = np.asarray(vals, dtype=np.float64)
        v /= np.sqrt(v @ v)
        return v @ self.weights[idx] + self.intercept  # type: ignore[no-any-return]

    def proba(self, feats: list[str]) -> np.ndarray:
        z = self.logits(feats) / self.temperature
        z -= z.max()
        e = np.exp(z)
        return e / e.sum()  # type: ignore[no-any-return]

    # -- persistence -----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        terms = np.array(sorted(self.vocabulary, key=self.vocabulary.__getitem__), dtype=np.str_)
        np.savez_compressed(
            buf,
            terms=terms,
            idf=self.idf.astype(np.float32),
            weights=self.weights.astype(np.float32),
            intercept=self.intercept.astype(np.float64),
            classes=np.array([c.value for c in self.classes], dtype=np.str_),
            temperature=np.array([self.temperature]),
            meta=np.array([json.dumps(self.meta, sort_keys=True, default=str)], dtype=np.str_),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> IntentModel:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            terms = [str(t) for t in z["terms"]]
            return cls(
                vocabulary={t: i for i, t in enumerate(terms)},
                idf=z["idf"].astype(np.float64),
                weights=z["weights"].astype(np.float64),
                intercept=z["intercept"].astype(np.float64),
                classes=tuple(Intent(str(c)) for c in z["classes"]),
                temperature=float(z["temperature"][0]),
                meta=json.loads(str(z["meta"][0])),
            )

    def save(self, path: Path) -> None:
        path.write_bytes(self.to_bytes())
        path.with_suffix(".json").write_text(
            json.dumps(self.meta, indent=2, sort_keys=True, default=str) + "\n"
        )

    @classmethod
    def load(cls, path: Path) -> IntentModel:
        return cls.from_bytes(path.read_bytes())
