"""CommitParts: a local run that commits as it goes (``--commit_every``), inside one job.

Each writer (one per bundle of the embedding stage) writes what it receives straight into
a part of its own, ``ROOT/run=<run id>-part-<writer>-<k>/`` with ``images/``,
``embeddings/<layer>/`` and ``errors/``, and every ``images_per_part`` outcomes (embedded
images and errors) closes the files and commits the part as a completed run of the root:
its manifest (``part_of``: the run), then its index entry. A kill loses only the parts not
yet committed; the same command then skips what the committed ones hold, unopened, like
any earlier run's. The run's own partition keeps what is written at its end (``skipped/``,
``shards/``) and its manifest lists the parts (pipeline/job/finalize.py)."""

from __future__ import annotations

import collections
import time
import uuid
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from pipeline.job import counting
from pipeline.job.finalize import build_manifest, kept_missing_in_parts
from pipeline.root import incremental, outputs
from pipeline.root import manifest as manifest_lib
from schemas import ERROR_ROWS, BatchEmbeddings, ExtractionConfig, ImageError, embeddings_schema, image_rows, layout, parquet_encoding
from schemas.accounting import EMBEDDED, ERRORS, MATCHED, READ, SKIPPED, SKIPPED_SAME_CONTENT, SKIPPED_UNCHANGED
from transforms.write import CODEC, images_table, layer_table

class PartsSpec(NamedTuple):
    """Where and how often a run commits its parts: ``root`` and ``run_id`` of the run,
    its ``embedding_key``, ``images_per_part`` (outcomes per part and writer), the
    launcher's ``run_record`` (each part's manifest starts from it) and the run's
    ``launched_at``."""

    root: str
    run_id: str
    embedding_key: str
    images_per_part: int
    run_record: dict
    launched_at: float


def per_writer(commit_every: int, writers: int) -> int:
    """Outcomes per part of each of ``writers`` concurrent writers, so that all of them
    together hold at most ``commit_every`` uncommitted outcomes."""
    return max(1, commit_every // max(1, writers))


class _OpenPart:
    """One part being written: an open Parquet file per folder, the errors held until the
    part closes, and what it counted."""

    def __init__(self, directory: str, config: ExtractionConfig, kept_columns: tuple[str, ...]):
        self.directory = directory
        self._config = config
        self._image_rows = image_rows(kept_columns)
        self._kept = kept_columns
        self._layer_schemas = {layer: embeddings_schema(config, layer) for layer in config.layers}
        self._writers: dict[str, tuple] = {}
        self.errors: list[ImageError] = []
        self.embedded = 0
        self.kept_nulls: collections.Counter = collections.Counter()

    @property
    def outcomes(self) -> int:
        return self.embedded + len(self.errors)

    def _write(self, folder: str, schema: pa.Schema, table: pa.Table) -> None:
        if folder not in self._writers:
            path = layout.join(self.directory, folder, f"{layout.PART_PREFIX}-00000{layout.PARQUET_SUFFIX}")
            handle = FileSystems.create(path, mime_type="application/x-parquet")
            self._writers[folder] = (handle, pq.ParquetWriter(
                handle, schema, compression=CODEC, use_compliant_nested_type=False,
                **parquet_encoding(schema)))
        self._writers[folder][1].write_table(table)

    def add_batch(self, batch: BatchEmbeddings) -> None:
        images = images_table(batch, self._image_rows)
        self._write(self._image_rows.folder, self._image_rows.schema, images)
        for name in self._kept:
            self.kept_nulls[name] += images.column(name).null_count
        for layer, schema in self._layer_schemas.items():
            self._write(layout.join(layout.EMBEDDINGS_DIR, layer), schema,
                        layer_table(batch, layer, self._config, schema))
        self.embedded += len(batch.infos)

    def close(self) -> None:
        if self.errors:
            self._write(ERROR_ROWS.folder, ERROR_ROWS.schema, ERROR_ROWS.table(self.errors))
        for handle, writer in self._writers.values():
            writer.close()
            handle.close()
        self._writers = {}

    def abandon(self) -> None:
        """Close the files of a part that will not be committed (the bundle failed)."""
        for handle, writer in self._writers.values():
            try:
                writer.close()
                handle.close()
            except Exception:  # noqa: BLE001 - the part is removed as unfinished anyway
                pass
        self._writers = {}

    def counts(self) -> dict:
        by_stage, examples = outputs.tally_errors((error.uri, error.stage, error.error_type) for error in self.errors)
        return {
            MATCHED: self.outcomes, READ: 0, EMBEDDED: self.embedded, ERRORS: len(self.errors),
            SKIPPED_UNCHANGED: 0, SKIPPED_SAME_CONTENT: 0, SKIPPED: 0,
            "errors_by_stage": by_stage,
            "error_examples": examples,
            "rows_per_layer": {layer: self.embedded for layer in self._config.layers},
        }


class CommitPartsFn(beam.DoFn):
    """BatchEmbeddings | ImageError -> one part record (dict) per committed part: ``run``
    (the part's run id), ``counts`` (its manifest's), ``kept_rows`` and ``kept_nulls``
    (per --keep_columns name). Commits a part every ``spec.images_per_part`` outcomes and
    at the end of every bundle; a failed bundle's open part is never committed (it has no
    index entry, and the next run removes it)."""

    def __init__(self, spec: PartsSpec, config: ExtractionConfig, kept_columns: tuple[str, ...],
                 progress_dir: str | None = None):
        self._spec = spec
        self._config = config
        self._kept = tuple(kept_columns)
        self._progress_dir = progress_dir

    def start_bundle(self):
        self._writer = uuid.uuid4().hex[:12]
        self._number = 0
        self._part: _OpenPart | None = None

    def _open(self) -> _OpenPart:
        if self._part is None:
            part_id = layout.part_run_id(self._spec.run_id, self._writer, self._number)
            self._part = _OpenPart(layout.run_partition(self._spec.root, part_id), self._config, self._kept)
        return self._part

    def process(self, element):
        part = self._open()
        if isinstance(element, BatchEmbeddings):
            part.add_batch(element)
        else:
            part.errors.append(element)
        if part.outcomes >= self._spec.images_per_part:
            yield self._commit()

    def finish_bundle(self):
        if self._part is not None and self._part.outcomes:
            yield GlobalWindows.windowed_value(self._commit())

    def teardown(self):
        part = getattr(self, "_part", None)
        if part is not None:
            part.abandon()

    def _commit(self) -> dict:
        part, spec = self._part, self._spec
        self._part = None
        part.close()
        part_id = layout.part_run_id(spec.run_id, self._writer, self._number)
        self._number += 1
        counts = part.counts()
        now = time.time()
        part_record = {"run": part_id, "counts": counts, "kept_rows": part.embedded,
                       "kept_nulls": dict(part.kept_nulls)}
        record = {**spec.run_record, "run": part_id, "part_of": spec.run_id, "output": part.directory}
        manifest = build_manifest(record, counts, launched_at=spec.launched_at, submitted_at=spec.launched_at,
                                  first_batch_at=None, now=now)
        manifest["files"] = outputs.part_sizes(part.directory, self._config.layers)
        manifest["kept_columns_missing"] = kept_missing_in_parts(list(self._kept), [part_record])
        manifest_lib.write_manifest(part.directory, manifest)
        incremental.add_index_entry(spec.root, part_id, spec.embedding_key, manifest)
        if self._progress_dir is not None:
            counting.count_committed(self._progress_dir, part.outcomes)
        return part_record


class CommitParts(beam.PTransform):
    """(BatchEmbeddings, ImageError) PCollections -> PCollection[dict], one part record per
    committed part (CommitPartsFn): every embedded image and every error of the run, in
    parts committed as they fill. Embeddings and errors have writers of their own: a
    writer fused right after the model commits while the stage runs, where one behind a
    Flatten would run in a stage of its own once the embedding stage had finished (Beam
    materializes a Flatten's inputs: no part would commit before the end)."""

    def __init__(self, spec: PartsSpec, config: ExtractionConfig, kept_columns: tuple[str, ...] = (),
                 progress_dir: str | None = None):
        super().__init__()
        self._fn = CommitPartsFn(spec, config, kept_columns, progress_dir)

    def expand(self, inputs):
        embeddings, errors = inputs
        return ((embeddings | "CommitEmbedded" >> beam.ParDo(self._fn),
                 errors | "CommitErrors" >> beam.ParDo(self._fn))
                | "Records" >> beam.Flatten())
