"""Coders for the elements that carry arrays or image bytes (and Arrow tables): pickled as before, but their
size, which Beam samples on every step's output for its metrics, is added up from the
arrays and bytes instead of being found by pickling the element (a 32-image batch at 224 is
4.3 MB to pickle, and few enough batches pass that Beam samples nearly every one)."""

from __future__ import annotations

import pickle

import apache_beam as beam
import pyarrow as pa
from apache_beam.coders import coder_impl

from schemas import BatchEmbeddings, ImageBatch, ImageFile

#: What one image's record (uri, id, sizes, format) adds, roughly.
_RECORD_BYTES = 200


def estimated_size(element) -> int:
    """Bytes of ``element``'s arrays or data plus a fixed amount per image record."""
    if isinstance(element, ImageFile):
        return len(element.data) + _RECORD_BYTES
    if isinstance(element, ImageBatch):
        return element.pixels.nbytes + _RECORD_BYTES * len(element.infos)
    if isinstance(element, BatchEmbeddings):
        return sum(values.nbytes for values in element.layers.values()) + _RECORD_BYTES * len(element.infos)
    if isinstance(element, pa.Table):
        return element.nbytes
    return len(pickle.dumps(element, pickle.HIGHEST_PROTOCOL))


class ArraysCoder(beam.coders.PickleCoder):
    """PickleCoder whose size estimate is ``estimated_size``."""

    def _create_impl(self):
        protocol = pickle.HIGHEST_PROTOCOL
        return coder_impl.CallbackCoderImpl(lambda value: pickle.dumps(value, protocol), pickle.loads,
                                            estimated_size)


for _element_type in (ImageFile, ImageBatch, BatchEmbeddings, pa.Table):
    beam.coders.registry.register_coder(_element_type, ArraysCoder)
