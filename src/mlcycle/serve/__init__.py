"""Serving: deployments, the model server, the prediction log and feedback."""

from __future__ import annotations

from mlcycle.serve._sink import PredictionBatch, PredictionSink

__all__ = ["PredictionBatch", "PredictionSink"]
