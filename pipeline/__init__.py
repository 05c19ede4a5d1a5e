"""The extraction job: options, graph composition, CLI and manifest.

Architecture, one line per module:
  schemas/layers.py     ResNet50 layer catalog, aliases, layer_shape(layer, size)
  schemas/config.py     ExtractionConfig: the validated settings, their record and embedding key
  schemas/elements.py   element types passed between transforms, stage names
  schemas/arrow.py      Arrow schemas of images/, errors/, skipped/ and embeddings/<layer>/
  schemas/layout.py     paths of every output under --output
  schemas/contracts.py  ShapeContractError and assert_shape
  schemas/limits.py     InputLimits and the typed rejections (stage 'validate')
  models/weights.py     ImageNet cache, seeded random weights, HDF5 weights files
  models/resnet50.py    the bare tf_keras ResNet50 for one input size
  models/extractor.py   one tf.function: preprocess, forward, pool every layer; mixed precision
  models/handler.py     ResNet50Handler: the extractor as a Beam ModelHandler; weights' SHA-256 checked
  models/serving.py     SharedModel: the model in this process, or in model processes (model_copies)
  models/handover.py    batches to a model process through shared memory
  models/device.py      GPU memory growth, the device the model runs on
  models/calibrate.py   BatchNorm statistics from real activations
  transforms/listing.py ListFiles: pattern -> ListedFile(uri, size_bytes, modified_us), nothing opened
  transforms/read.py    ReadImages: ListedFile -> ImageFile (uri, sha256, bytes); RereadImages
  transforms/embed.py   EmbedImages: (key, bytes) -> embeddings and errors, the composite for any pipeline
  transforms/decode.py  DecodeImages: header guards, bytes -> HxWx3 uint8 RGB
  transforms/resize.py  ResizeImages: center_crop / stretch / pad to the input size
  transforms/batch.py   BatchByShape: uniform (n, H, W, 3) batches
  transforms/extract.py ExtractLayers: a ResNet50Handler's model -> per-layer arrays, batch halving
  transforms/write.py   WriteEmbeddings: Parquet images/, embeddings/<layer>/, errors/
  transforms/shards.py  WebDataset, Parquet, TFRecord shards streamed: one ImageFile per sample
  transforms/skip.py    SkipUnchanged (join by uri), SkipSameContent (join by image_id)
  transforms/known.py   ReadKnownFiles: earlier runs' images/ and skipped/ rows, streamed
  transforms/errors.py  exception -> ImageError row on the error output, counters
  pipeline/options.py   the CLI options (a PipelineOptions subclass)
  pipeline/build.py     composition of the transforms
  pipeline/local.py     local runs: the in-process runner, worker processes, TF threads
  pipeline/outputs.py   output folder checks, --overwrite, is_complete, row counts
  pipeline/manifest.py  manifest.json contents
  pipeline/finalize.py  FinalizeRun: the job's last step, accounting check and manifest
  pipeline/incremental.py --mode incremental: run partitions, index, what a run compares with
  pipeline/lock.py      the output's lock: atomic create, stale or dead holders
  pipeline/run.py       CLI entry: validate, plan the output, run, report, exit codes
  pipeline/template.py  the Flex Template's metadata.json from the options parser
  pipeline/results.py   read_layer / layer_dataset across completed outputs
  pipeline/reports.py   layer shapes table, a run's summary
  pipeline/neighbors.py nearest images by cosine similarity
  pipeline/featuremaps.py the feature-map PNG: input as seen, a channel grid per layer
  pipeline/inspect.py   CLI: shapes | featuremaps | summary | neighbors
"""
