"""Evaluation: language-modelling metrics, generations and the report."""
