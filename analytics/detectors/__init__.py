"""Anomaly detectors: the ``Detector`` contract and one folder per implementation.

``DETECTORS`` maps a name (as stored in model metadata and configs) to its class; core code
builds detectors through :func:`make_detector` and never names a concrete one;
:func:`check_detector` validates a name and its parameters without fitting (config loading).
"""

from __future__ import annotations

import inspect
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


def detector_class(name: str) -> type[Any]:
    """The class registered as ``name``; ``ValueError`` naming the choices for an unknown one."""
    try:
        return DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(sorted(DETECTORS))}") from None


def detector_parameters(name: str) -> list[str]:
    """The parameter names the detector ``name`` takes (its constructor's keywords)."""
    sig = inspect.signature(detector_class(name))
    return [p.name for p in sig.parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def check_detector(name: str, params: dict[str, Any]) -> None:
    """``ValueError`` saying what is wrong if ``make_detector(name, **params)`` would fail: an
    unknown name (with the choices), an unknown parameter (with the ones it takes), or a value
    its constructor refuses. Nothing is fitted."""
    cls = detector_class(name)
    accepted = detector_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"detector {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                         f"it takes {', '.join(accepted) or 'none'}")
    try:
        cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"detector {name!r}: {exc}") from None


def make_detector(name: str, **params: Any) -> Detector:
    """A fresh detector by registry name; ``ValueError`` naming the choices for an unknown one."""
    det: Detector = detector_class(name)(**params)
    return det


__all__ = ["DETECTORS", "Detector", "FloatArray", "as_matrix", "check_detector", "detector_class",
           "detector_parameters", "make_detector", "shares", "top_contributors"]
