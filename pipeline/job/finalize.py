"""FinalizeRun: the job's last step checks the accounting and writes manifest.json.

It runs inside the pipeline, after every sink has finalized its files, so the manifest is
written by the job itself on every runner: a local run, a Dataflow job submitted from a
laptop, and a Flex Template launch whose launcher never waits for the job."""

from __future__ import annotations

import datetime
import json
import logging
import posixpath
import time

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from pipeline.root import manifest as manifest_lib
from pipeline.root import incremental, outputs
from schemas import ExtractionConfig, accounting, layout
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


#: The manifest lists at most this many model processes (a fleet of 100 8-GPU VMs has
#: 800); ``model_processes_total`` counts them all.
MAX_MODEL_RECORDS = 1024


def _record_key(record: dict) -> tuple:
    return (record.get("kind", "model"), str(record.get("host")), record.get("pid"), record.get("copy"))


def _better(known: dict | None, record: dict) -> bool:
    """A record with a certificate (its first batch ran) beats one without."""
    return known is None or (known.get("certificate") is None and record.get("certificate") is not None)


class ModelRecordsFn(beam.CombineFn):
    """ExtractLayers' records (JSON text, one per model and per SDK process per bundle) to
    {"model_processes": [...], "sdk_processes_sharing": [...], "model_processes_total": n}:
    one record for each (kind, host, pid, copy), the one that holds the most, sorted by host,
    copy and pid. Its accumulator grows with the processes of the job, never with its
    images or bundles; past MAX_MODEL_RECORDS processes of a kind only the count grows."""

    def create_accumulator(self):
        return {}, {"model": 0, "sdk_process": 0}

    def add_input(self, accumulator, text):
        return self._add(accumulator, json.loads(text))

    def _add(self, accumulator, record):
        best, overflow = accumulator
        key = _record_key(record)
        if key in best:
            if _better(best[key], record):
                best[key] = record
        elif sum(1 for known in best if known[0] == key[0]) < MAX_MODEL_RECORDS:
            best[key] = record
        else:
            overflow[key[0]] = overflow.get(key[0], 0) + 1  # may count a process twice: a bound
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for best, overflow in accumulators:
            for record in best.values():
                self._add(merged, record)
            for kind, count in overflow.items():
                merged[1][kind] = merged[1].get(kind, 0) + count
        return merged

    def extract_output(self, accumulator):
        best, overflow = accumulator
        ordered = sorted(best.items(), key=lambda item: (item[0][1], item[0][3] if item[0][3] is not None else -1,
                                                        item[0][2] or 0))
        strip = lambda record: {k: v for k, v in record.items() if k != "kind"}  # noqa: E731
        processes = [strip(record) for key, record in ordered if key[0] == "model"]
        return {"model_processes": processes,
                "model_processes_total": len(processes) + overflow.get("model", 0),
                "sdk_processes_sharing": [strip(record) for key, record in ordered if key[0] == "sdk_process"]}


def model_records(texts) -> dict:
    """ModelRecordsFn over a list of record texts (one machine's worth, or a test's)."""
    fn = ModelRecordsFn()
    accumulator = fn.create_accumulator()
    for text in texts:
        accumulator = fn.add_input(accumulator, text)
    return fn.extract_output(accumulator)


class _WriteManifestFn(beam.DoFn):
    def __init__(self, output_dir: str, config: ExtractionConfig, run_record: dict,
                 launched_at: float, submitted_at: float, on_complete):
        self._output_dir = output_dir
        self._config = config
        self._run_record = run_record
        self._launched_at = launched_at
        self._submitted_at = submitted_at
        self._on_complete = on_complete

    def process(self, _, first_batch_at, written, images_per_kind, models=None, chunk=None, parts=None):
        counted = {name: images_per_kind.get(name, 0) for name in FROM_ELEMENTS}
        counts = {
            **counted,
            accounting.SKIPPED: counted[accounting.SKIPPED_UNCHANGED] + counted[accounting.SKIPPED_SAME_CONTENT],
            **outputs.written_counts(self._output_dir, self._config),
        }
        if parts is not None:
            remove_stray_parts(self._run_record["root"], self._run_record["run"], parts)
            counts = with_parts(counts, parts)
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
        manifest.update(models or model_records(()))
        if parts is not None:
            # The run's own rows are what it wrote itself; its parts are runs of their own
            # (each with its index entry), so that no total counts an image twice.
            manifest["command_counts"], manifest["counts"] = counts, own_counts(counts, parts)
            manifest["parts"] = sorted(part["run"] for part in parts)
        if chunk is not None:
            manifest["chunk"] = {**manifest.get("chunk", {}), **chunk}
        # What a later run checks this one against before trusting it (outputs.damage).
        manifest["files"] = outputs.part_sizes(self._output_dir, self._config.layers)
        kept = list(self._run_record.get("read", {}).get("keep_columns", []))
        manifest["kept_columns_missing"] = (outputs.kept_columns_missing(self._output_dir, kept)
                                            if parts is None else kept_missing_in_parts(kept, parts))
        path = manifest_lib.write_manifest(self._output_dir, manifest)
        _log.info("%d files written; manifest %s", len(written), path)
        if self._on_complete is not None:
            self._on_complete(manifest)
        yield path


def with_parts(counts: dict, parts: list[dict]) -> dict:
    """``counts`` of the run's own partition plus its committed parts' embedded images,
    errors and layer rows: what the command did."""
    total = dict(counts)
    by_stage = {stage: dict(types) for stage, types in counts["errors_by_stage"].items()}
    examples = dict(counts.get("error_examples", {}))
    rows = dict(counts["rows_per_layer"])
    for part in parts:
        part_counts = part["counts"]
        total[EMBEDDED] += part_counts[EMBEDDED]
        total[ERRORS] += part_counts[ERRORS]
        for layer, number in part_counts["rows_per_layer"].items():
            rows[layer] = rows.get(layer, 0) + number
        for stage, types in part_counts["errors_by_stage"].items():
            for error_type, number in types.items():
                by_stage.setdefault(stage, {})
                by_stage[stage][error_type] = by_stage[stage].get(error_type, 0) + number
        for name, uri in part_counts.get("error_examples", {}).items():
            examples[name] = min(examples.get(name, uri), uri)
    total.update(errors_by_stage={s: by_stage[s] for s in sorted(by_stage)},
                 error_examples=dict(sorted(examples.items())), rows_per_layer=rows)
    return total


def own_counts(command: dict, parts: list[dict]) -> dict:
    """The run's own counts when its images and errors are in ``parts``: matched less the
    parts' outcomes, read and the skips; no embedded images, errors or layer rows."""
    in_parts = sum(part["counts"][MATCHED] for part in parts)
    return {**command, MATCHED: command[MATCHED] - in_parts, EMBEDDED: 0, ERRORS: 0,
            "errors_by_stage": {}, "error_examples": {},
            "rows_per_layer": {layer: 0 for layer in command["rows_per_layer"]}}


def kept_missing_in_parts(kept: list[str], parts: list[dict]) -> list[str]:
    """The --keep_columns names null in every embedded image of every part."""
    rows = sum(part["kept_rows"] for part in parts)
    return [name for name in kept
            if rows and sum(part["kept_nulls"].get(name, 0) for part in parts) == rows]


def remove_stray_parts(root: str, run_id: str, parts: list[dict]) -> list[str]:
    """Take out the committed parts of ``run_id`` that no record names: parts a bundle
    committed before it failed, whose images its retry committed again (Dataflow retries a
    failed bundle; the local runner fails the job). Returns their run ids."""
    listed = {part["run"] for part in parts}
    stray = [entry_run for entry_run in _index_runs(root) if layout.is_part_of(entry_run, run_id)
             and entry_run not in listed]
    for part_id in stray:
        incremental.remove_run(root, part_id)
        _log.warning("removed part %s of run %s: a failed bundle committed it, and its retry "
                     "committed its images again", part_id, run_id)
    return stray


def _index_runs(root: str) -> list[str]:
    return [posixpath.basename(path)[:-len(".json")] for path in incremental.index_entry_paths(root)]


def _earliest(times) -> float | None:
    return min((t for t in times if t is not None), default=None)


class _CountPerBundleFn(beam.DoFn):
    """Elements of one accounting kind -> one ``(kind, images)`` pair per bundle that counted
    any: the sum of how many input images each element stands for (an Unchanged shard, its
    samples). One pair per bundle instead of one per image: a pair per image cost an
    output, an encode, a decode and a combine step per image (issue 29). Global windows
    only (a batch job's)."""

    def __init__(self, kind: str):
        self._kind = kind

    def start_bundle(self):
        self._images = 0

    def process(self, element):
        self._images += images_counted(element)

    def finish_bundle(self):
        if self._images:  # a kind that adds nothing counts 0 anyway (the manifest's dict side input)
            yield GlobalWindows.windowed_value((self._kind, self._images))


def _counted(pcoll, name: str):
    """(name, images) pairs, one per bundle, adding up to the images ``pcoll`` stands for."""
    return pcoll | f"Count[{name}]" >> beam.ParDo(_CountPerBundleFn(name))


class FinalizeRun(beam.PTransform):
    """Waits for every sink, then writes ``manifest.json`` under ``output_dir``.

    Input: a dict with ``written`` (PCollection[str] of finalized file names, all sinks
    flattened) and one PCollection per accounting kind (schemas.accounting), each
    element standing for ``images_counted(element)`` images: every input image in
    ``matched`` and every image whose bytes were hashed in ``read`` (Tally elements, plus
    an Unchanged per file skipped by its listing in ``matched``), per file or sample
    skipped by its listing in ``skipped_unchanged`` (an Unchanged shard stands for its
    samples, in ``matched`` too) and per image skipped for its content in
    ``skipped_same_content``; ``embedded`` (BatchEmbeddings: their arrival time marks the
    first embedded batch; the embedded and error counts come from the written files), and
    optionally ``models`` (ExtractLayers' model records: the manifest's
    ``model_processes``, one per model process, however many bundles it served), and with
    a chunk ``deferred`` (uri per file left for a later chunk) and ``chunk`` (one dict,
    TakeChunk's summary, added to the manifest's ``chunk``), and with parts ``parts``
    (CommitParts' records: the run's images and errors are in those parts, its manifest
    lists them and keeps its own rows in ``counts``, the command's in ``command_counts``;
    parts no record names are removed). Only counts of these reach the
    last step: one combine of (kind, images) pairs, a dict side input (a kind with no
    elements counts 0), and singletons. Output: PCollection[str] with the manifest path,
    one element. When the accounting does not add up the step raises AccountingError, the
    job fails and no manifest is written. ``on_complete(manifest)`` runs after the manifest
    is written (incremental runs record the run in the root's index there)."""

    def __init__(self, output_dir: str, config: ExtractionConfig, run_record: dict, *,
                 launched_at: float, submitted_at: float, on_complete=None):
        super().__init__()
        self._write_manifest = _WriteManifestFn(output_dir, config, run_record, launched_at,
                                                submitted_at, on_complete)

    def expand(self, inputs):
        counts = (
            [_counted(inputs[name], name) for name in FROM_ELEMENTS if name in inputs]
            | "AllCounts" >> beam.Flatten()
            | "Counts" >> beam.CombinePerKey(sum)
        )
        first_batch_at = (
            inputs[EMBEDDED]
            | "BatchTime" >> beam.Map(lambda _: time.time())
            | "FirstBatch" >> beam.CombineGlobally(_earliest)
        )
        extra = {}
        if "chunk" in inputs:
            extra["chunk"] = beam.pvalue.AsSingleton(inputs["chunk"])
        if "parts" in inputs:
            extra["parts"] = beam.pvalue.AsList(inputs["parts"])
        if "models" in inputs:
            extra["models"] = beam.pvalue.AsSingleton(
                inputs["models"] | "ModelRecords" >> beam.CombineGlobally(ModelRecordsFn()))
        return (
            inputs[MATCHED].pipeline
            | "Once" >> beam.Create([None])
            | "WriteManifest" >> beam.ParDo(
                self._write_manifest,
                images_per_kind=beam.pvalue.AsDict(counts),
                first_batch_at=beam.pvalue.AsSingleton(first_batch_at),
                written=beam.pvalue.AsList(inputs["written"]),
                **extra,
            )
        )
