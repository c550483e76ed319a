"""Reliability of ``kedro run``: fail fast, fail clearly, end cleanly (docs/reliability.md).

``hooks`` holds the Kedro hooks (registered in settings.py); :mod:`bnstudy.cli` the command
line guard (project lock, signals, user errors, ``--params`` parsing).
"""
