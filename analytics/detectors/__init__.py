"""Anomaly detectors: the ``Detector`` contract and one folder per implementation.

``DETECTORS`` maps a name (as stored in model metadata and configs) to its class; core code
builds detectors through :func:`make_detector` and never names a concrete one.
"""

from __future__ import annotations

from typing import Any, Final

from analytics.detectors.base import Detector, FloatArray, as_matrix, shares, top_contributors
from analytics.detectors.expected_power import ExpectedPowerDetector
from analytics.detectors.isolation_forest import IsolationForestDetector
from analytics.detectors.pca_t2q import PCAT2QDetector
from analytics.detectors.residual import ResidualDetector
from analytics.detectors.robust_z import RobustZDetector

DETECTORS: Final[dict[str, type[Any]]] = {
    cls.name: cls
    for cls in (RobustZDetector, PCAT2QDetector, ResidualDetector, IsolationForestDetector,
                ExpectedPowerDetector)
}


def make_detector(name: str, **params: Any) -> Detector:
    """A fresh detector by registry name; ``ValueError`` naming the choices for an unknown one."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(sorted(DETECTORS))}") from None
    det: Detector = cls(**params)
    return det


__all__ = ["DETECTORS", "Detector", "FloatArray", "as_matrix", "make_detector", "shares", "top_contributors"]
