"""The published SKAB leaderboard (copied from the dataset's ``PROTOCOL.md``)."""

from __future__ import annotations

from typing import Final

# algorithm -> (F1, FAR %, MAR %)
OUTLIER: Final[list[tuple[str, float, float, float]]] = [
    ("Conv-AE", 0.78, 13.55, 28.02),
    ("MSET", 0.78, 39.73, 14.13),
    ("T-squared+Q (PCA)", 0.76, 26.62, 24.92),
    ("LSTM-AE", 0.74, 29.96, 25.92),
    ("T-squared", 0.66, 19.21, 42.6),
    ("LSTM-VAE", 0.56, 9.13, 55.03),
    ("Vanilla LSTM", 0.54, 12.54, 59.53),
    ("Vanilla AE", 0.39, 2.59, 75.15),
    ("MSCRED", 0.36, 49.94, 69.88),
    ("Isolation forest", 0.29, 2.56, 82.89),
]
# algorithm -> (standard, low_fp, low_fn)
CHANGEPOINT: Final[list[tuple[str, float, float, float]]] = [
    ("MSCRED", 32.42, 16.53, 40.28),
    ("Isolation forest", 26.16, 19.5, 30.82),
    ("T-squared+Q", 25.35, 14.51, 31.33),
    ("Conv-AE", 23.61, 21.54, 27.55),
]
