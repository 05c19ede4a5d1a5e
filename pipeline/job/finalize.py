"""FinalizeRun: the job's last step checks the accounting and writes manifest.json.

It runs inside the pipeline, after every sink has finalized its files, so the manifest is
written by the job itself on every runner: a local run, a Dataflow job submitted from a
laptop, and a Flex Template launch whose launcher never waits for the job."""

from __future__ import annotations

import datetime
import logging
import time

import apache_beam as beam

from pipeline import manifest as manifest_lib
from pipeline import outputs
from schemas import ExtractionConfig, accounting
from schemas.accounting import EMBEDDED, ERRORS, FROM_ELEMENTS, MATCHED, images_counted

_log = logging.getLogger(__name__)


class AccountingError(RuntimeError):
    """Some input is neither in images/, errors/ nor skipped: the run is not complete."""


def utc_iso(unix_seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix_seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def check_accounting(counts: dict) -> list[str]:
    """matched = the sum of the outcomes (schemas.accounting), and every layer one row per
    embedded image."""
    problems = [problem for problem in [accounting.unaccounted(counts)] if problem]
    for layer, rows in counts["rows_per_layer"].items():
        if rows != counts[EMBEDDED]:
            problems.append(f"layer {layer} has {rows} rows, images/ has {counts[EMBEDDED]}")
    return problems


def build_manifest(run_record: dict, counts: dict, *, launched_at: float,
                   submitted_at: float, first_batch_at: float | None, now: float) -> dict:
    """The manifest of a completed run: the launcher's ``run_record`` (input, output, runner,
    config, limits, weights, layers, mode) plus counts, library versions and timings."""
    pipeline_seconds = now - submitted_at
    fraction = counts[ERRORS] / counts[MATCHED] if counts[MATCHED] else 0.0
    limit = run_record.get("max_error_fraction")
    return {
        "complete": True,
        "manifest_version": manifest_lib.MANIFEST_VERSION,
        **run_record,
        "counts": counts,
        "versions": manifest_lib.library_versions(),
        "timings": {
            "started_utc": utc_iso(launched_at),
            "finished_utc": utc_iso(now),
            "seconds_total": round(now - launched_at, 3),
            "seconds_pipeline": round(pipeline_seconds, 3),
            "startup_seconds": round(first_batch_at - launched_at, 3) if first_batch_at else None,
            "images_per_second": round(counts[EMBEDDED] / pipeline_seconds, 3)
            if pipeline_seconds > 0 else None,
        },
        "error_fraction": round(fraction, 6),
        "max_error_fraction_exceeded": limit is not None and fraction > limit,
    }


class _WriteManifestFn(beam.DoFn):
    def __init__(self, output_dir: str, config: ExtractionConfig, run_record: dict,
                 launched_at: float, submitted_at: float, on_complete):
        self._output_dir = output_dir
        self._config = config
        self._run_record = run_record
        self._launched_at = launched_at
        self._submitted_at = submitted_at
        self._on_complete = on_complete

    def process(self, _, first_batch_at, written, **counted):
        counts = {
            **{name: counted[name] for name in FROM_ELEMENTS},
            accounting.SKIPPED: counted[accounting.SKIPPED_UNCHANGED] + counted[accounting.SKIPPED_SAME_CONTENT],
            **outputs.written_counts(self._output_dir, self._config),
        }
        problems = check_accounting(counts)
        if problems:
            raise AccountingError(
                "accounting check failed: " + "; ".join(problems)
                + f"; no manifest written: {self._output_dir} is not a complete output"
            )
        manifest = build_manifest(
            self._run_record, counts, launched_at=self._launched_at,
            submitted_at=self._submitted_at, first_batch_at=first_batch_at, now=time.time(),
        )
        # What a later run checks this one against before trusting it (outputs.damage).
        manifest["files"] = outputs.part_sizes(self._output_dir, self._config.layers)
        manifest["kept_columns_missing"] = outputs.kept_columns_missing(
            self._output_dir, list(self._run_record.get("read", {}).get("keep_columns", [])))
        path = manifest_lib.write_manifest(self._output_dir, manifest)
        _log.info("%d files written; manifest %s", len(written), path)
        if self._on_complete is not None:
            self._on_complete(manifest)
        yield path


def _earliest(times) -> float | None:
    return min((t for t in times if t is not None), default=None)


def _count(pcoll, label: str):
    """How many input images ``pcoll`` stands for (an Unchanged shard: its samples)."""
    return (pcoll | label.replace("Count", "Images", 1) >> beam.Map(images_counted)
            | label >> beam.CombineGlobally(sum))


class FinalizeRun(beam.PTransform):
    """Waits for every sink, then writes ``manifest.json`` under ``output_dir``.

    Input: a dict with ``written`` (PCollection[str] of finalized file names, all sinks
    flattened) and one PCollection per accounting kind (schemas.accounting): one element
    per input image in ``matched``, per image whose bytes were hashed in ``read``, per file
    or sample skipped by its listing in ``skipped_unchanged`` (an Unchanged shard stands
    for its samples, in ``matched`` too) and per image skipped for its content in
    ``skipped_same_content``; ``embedded`` (BatchEmbeddings: their arrival time marks the
    first embedded batch; the embedded and error counts come from the written files). Only counts of these reach the
    last step, as singleton side inputs. Output: PCollection[str] with the manifest path,
    one element. When the accounting does not add up the step raises AccountingError, the
    job fails and no manifest is written. ``on_complete(manifest)`` runs after the manifest
    is written (incremental runs record the run in the root's index there)."""

    def __init__(self, output_dir: str, config: ExtractionConfig, run_record: dict, *,
                 launched_at: float, submitted_at: float, on_complete=None):
        super().__init__()
        self._write_manifest = _WriteManifestFn(output_dir, config, run_record, launched_at,
                                                submitted_at, on_complete)

    def expand(self, inputs):
        counts = {
            name: beam.pvalue.AsSingleton(_count(inputs[name], f"Count[{name}]")) for name in FROM_ELEMENTS
        }
        first_batch_at = (
            inputs[EMBEDDED]
            | "BatchTime" >> beam.Map(lambda _: time.time())
            | "FirstBatch" >> beam.CombineGlobally(_earliest)
        )
        return (
            inputs[MATCHED].pipeline
            | "Once" >> beam.Create([None])
            | "WriteManifest" >> beam.ParDo(
                self._write_manifest,
                **counts,
                first_batch_at=beam.pvalue.AsSingleton(first_batch_at),
                written=beam.pvalue.AsList(inputs["written"]),
            )
        )
