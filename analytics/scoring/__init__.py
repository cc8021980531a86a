"""Online scoring: the anomaly model pipeline and the CSV scorer."""

from analytics.scoring.model import AnomalyModel, ModelSpec, ScoredChunk, StreamScorer

__all__ = ["AnomalyModel", "ModelSpec", "ScoredChunk", "StreamScorer"]
