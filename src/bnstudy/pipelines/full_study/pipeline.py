"""``full_study`` = data_ingestion + preprocessing + training (both models) + analysis + reporting.

A pipeline module of its own (rather than a sum in the registry) so that Kedro's lazy
pipeline discovery finds it by name: ``kedro run --pipeline full_study``.
"""

from kedro.pipeline import Pipeline

from bnstudy.pipelines import analysis, data_ingestion, preprocessing, reporting, training

STAGES = (data_ingestion, preprocessing, training, analysis, reporting)


def create_pipeline(**kwargs) -> Pipeline:
    return sum((stage.create_pipeline() for stage in STAGES), start=Pipeline([]))
