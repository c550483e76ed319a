"""``data_ingestion``: CIFAR-10 from its official archive, a local copy, or an image folder."""

from bnstudy.pipelines.data_ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
