"""Data: sources → label mapping → split → in-memory batches."""

from lit_vision.data.arrays import ImageArrays, SourceSplits
from lit_vision.data.datamodule import VisionDataModule
from lit_vision.data.mapping import LabelMapping
from lit_vision.data.sources import SOURCES, load_source, register_source

__all__ = ["ImageArrays", "SourceSplits", "VisionDataModule", "LabelMapping", "SOURCES", "load_source",
           "register_source"]
