"""One composable PTransform per step: list, read, skip, decode, resize, batch, extract, write;
ReadInputs and EmbedImages compose them."""

from transforms import lifeline

lifeline.start()  # a local run's worker process: end with the launcher, ignore Ctrl-C; first

from transforms import coders  # noqa: F401  (registers the array elements' coders)

from transforms.batch import BatchByShape
from transforms.decode import DecodeImages
from transforms.embed import EmbedImages
from transforms.extract import ExtractLayers
from transforms.inputs import ReadInputs
from transforms.known import ReadKnownFiles, ReadShardRecords
from transforms.listing import ListFiles
from transforms.prepare import PrepareBatches
from transforms.read import ReadImages, RereadImages
from transforms.resize import ResizeImages
from transforms.skip import SkipSameContent, SkipUnchanged
from transforms.write import WriteEmbeddings

__all__ = [
    "ReadInputs",
    "ListFiles",
    "ReadImages",
    "RereadImages",
    "ReadKnownFiles",
    "ReadShardRecords",
    "SkipUnchanged",
    "SkipSameContent",
    "EmbedImages",
    "PrepareBatches",
    "DecodeImages",
    "ResizeImages",
    "BatchByShape",
    "ExtractLayers",
    "WriteEmbeddings",
]
