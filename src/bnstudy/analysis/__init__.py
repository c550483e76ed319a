"""Tidy tables and statistics computed from training traces (pandas, scipy; no Kedro)."""
