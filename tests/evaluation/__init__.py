"""Tests of metrics, the predictor, evaluate, predict, reports, quality scores."""
