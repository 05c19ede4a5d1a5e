"""One composable PTransform per step: read, decode, resize, batch, extract, write."""

from transforms.batch import BatchByShape
from transforms.decode import DecodeImages
from transforms.extract import ExtractLayers
from transforms.read import ReadImages
from transforms.resize import ResizeImages
from transforms.skip import SkipEmbedded
from transforms.write import WriteEmbeddings

__all__ = [
    "ReadImages",
    "DecodeImages",
    "ResizeImages",
    "SkipEmbedded",
    "BatchByShape",
    "ExtractLayers",
    "WriteEmbeddings",
]
