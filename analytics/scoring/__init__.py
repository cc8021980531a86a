"""Online scoring: the anomaly model pipeline and the CSV scorer."""

from analytics.scoring.model import AnomalyModel, ModelSpec, ScoredChunk, StreamScorer, piece_starts

__all__ = ["AnomalyModel", "ModelSpec", "ScoredChunk", "StreamScorer", "piece_starts"]
