"""transforms/coders.py: array-carrying elements round-trip, and their sizes are added up
from their arrays, not pickled."""

import apache_beam as beam
import numpy as np
import pyarrow as pa

import transforms  # noqa: F401  (registers the coders)
from schemas import BatchEmbeddings, FileMeta, ImageBatch, ImageFile, ImageInfo
from transforms.coders import ArraysCoder, estimated_size


def _infos(n):
    return tuple(ImageInfo(FileMeta(f"/img/{i}.jpg", f"{i:064x}"), 500, 375, "JPEG") for i in range(n))


def test_elements_round_trip_and_sizes_come_from_their_arrays(monkeypatch):
    batch = ImageBatch(_infos(3), np.arange(3 * 8 * 8 * 3, dtype=np.uint8).reshape(3, 8, 8, 3))
    embeddings = BatchEmbeddings(_infos(3), {"res5": np.ones((3, 16), np.float32), "res2": np.zeros((3, 4), np.float32)})
    image = ImageFile(FileMeta("/img/a.jpg", "ab" * 32), b"\xff\xd8" + b"x" * 998)
    table = pa.table({"x": pa.array(np.arange(100, dtype=np.int64))})
    for element in (batch, embeddings, image, table):
        coder = beam.coders.registry.get_coder(type(element))
        assert isinstance(coder, ArraysCoder)
        back = coder.decode(coder.encode(element))
        if isinstance(element, pa.Table):
            assert back.equals(element)
        else:
            assert back.infos == element.infos if hasattr(element, "infos") else back == element
    assert estimated_size(batch) == batch.pixels.nbytes + 3 * 200
    assert estimated_size(embeddings) == (16 + 4) * 3 * 4 + 3 * 200
    assert estimated_size(image) == 1000 + 200
    assert estimated_size(table) == table.nbytes
    # Beam's own estimate goes through ours, never through pickling the element.
    monkeypatch.setattr("transforms.coders.pickle.dumps", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pickled")))
    assert ArraysCoder().get_impl().estimate_size(batch) >= batch.pixels.nbytes
