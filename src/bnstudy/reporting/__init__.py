"""Figures (seaborn) and the Markdown/HTML report (no Kedro)."""
