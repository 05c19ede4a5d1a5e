"""ResNet50Handler: the multi-layer extractor as a Beam ModelHandler.

The one place the model is built and its weights checked (``load_model``), for this
pipeline's ExtractLayers and for a user's own ``RunInference``."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.utils import shared

from models.gpus import GpuListing
from models.heap import freeze_long_lived
from models.placement import (
    GPUS_AUTO,
    ProcessClaims,
    Target,
    claims_folder,
    describe_process,
    machine_listing,
    parse_gpus,
    pin,
    target_for_copy,
    target_for_process,
)
from models.weights import check_weights_identity, resolve_weights_file
from schemas import STAGE_EXTRACT, ExtractionConfig, ShapeContractError, assert_shape

#: A model: uint8 pixels (n, H, W, 3) -> {layer: (n, *config.embedding_shape(layer))}.
LayerModel = Callable[[np.ndarray], dict]


class ResNet50Handler(ModelHandler[np.ndarray, PredictionResult, LayerModel]):
    """Examples are (H, W, 3) uint8 RGB images of ``config.input_shape`` (decoded and
    resized, e.g. by ``transforms.decode.decode_image`` and ``transforms.resize.resize_pixels``);
    each prediction is a ``PredictionResult(example, inference={layer: array}, model_id)``
    with ``array`` of ``config.embedding_shape(layer)`` in ``config.output_dtype`` and
    ``model_id`` the config's embedding key. The model returns named per-layer outputs, so
    row i of every layer belongs to example i by construction; shapes are asserted on the
    way in and out (ShapeContractError, stage 'extract').

    ``load_model`` resolves ``config.weights`` on the machine it runs on and, when
    ``config.weights_sha256`` is set (the launcher sets it to what the manifest records),
    refuses a file with another SHA-256 (WeightsError).

    Keyword-only options, named as Beam names them:

    - ``model_copies``: load exactly this many models per machine and share them among all
      of its SDK processes (``share_model_across_processes()`` is then True). ExtractLayers
      serves each copy from a model process of its own; Beam's RunInference hosts it in one
      of the SDK processes. None (default): one model per process.
    - ``gpus``: which GPUs of a machine the models use: ``"auto"`` (default: every GPU the
      driver lists, or those CUDA_VISIBLE_DEVICES allows), ``"none"`` (the CPU), or indexes
      such as ``"0,2"`` (models/placement.py). Copy i of ``model_copies`` runs on GPU
      i mod G; a model per process takes the GPU with the fewest processes of this job, so
      Beam's RunInference spreads its models over the GPUs too. Pinned by
      CUDA_VISIBLE_DEVICES in the model's process before TensorFlow loads.
    - ``accelerator``: a Dataflow accelerator resource hint (``get_resource_hints()``), e.g.
      ``"type:nvidia-l4;count:1;install-nvidia-driver"``, for the inference step only.
    - ``min_batch_size`` / ``max_batch_size``: RunInference's batching (default: up to
      ``config.batch_size``).
    - ``model_factory(config) -> model``: replaces the ResNet50 extractor (a zero-cost
      model in benchmarks, injected faults in tests); the weights are still checked.

    Example::

        from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
        handler = KeyedModelHandler(ResNet50Handler(ExtractionConfig(layers=("res5",))))
        keyed_pixels | RunInference(handler)   # -> (key, PredictionResult)
    """

    def __init__(self, config: ExtractionConfig, *, model_copies: int | None = None,
                 gpus: str | tuple[int, ...] = GPUS_AUTO,
                 accelerator: str | None = None, min_batch_size: int | None = None,
                 max_batch_size: int | None = None,
                 model_factory: Callable[[ExtractionConfig], LayerModel] | None = None):
        if model_copies is not None and model_copies < 1:
            raise ValueError(f"model_copies must be at least 1, got {model_copies}")
        super().__init__(min_batch_size=min_batch_size,
                         max_batch_size=max_batch_size or config.batch_size,
                         model_copies=model_copies)
        self.config = config
        self.gpus = gpus if isinstance(gpus, tuple) else parse_gpus(gpus)
        self.accelerator = accelerator or None
        self._model_factory = model_factory
        #: Names this handler's models on every worker of one job and in no other job: the
        #: settings' key plus a token drawn once, when the pipeline is built.
        self.model_tag = f"resnet50-{config.embedding_key}-{uuid.uuid4().hex[:12]}"
        #: One model per process for every DoFn holding a copy of this handler.
        self.per_process = shared.Shared()

    def load_model(self) -> LayerModel:
        """A model for this process (Beam's default; also each copy Beam itself hosts): on
        the least-claimed of the chosen GPUs of this machine, or the CPU."""
        listing = machine_listing()
        target = target_for_process(self.gpus, listing, ProcessClaims(claims_folder(self.model_tag)))
        return self._load(target, listing, copy=None)

    def load_copy(self, copy: int) -> LayerModel:
        """Model copy ``copy`` of ``model_copies``, in a model process of its own (models/
        serving.py): on chosen GPU ``copy`` mod G."""
        listing = machine_listing()
        return self._load(target_for_copy(copy, self.gpus, listing), listing, copy=copy)

    def _load(self, target: Target, listing: GpuListing, *, copy: int | None) -> LayerModel:
        pinned = pin(target)  # before anything here can initialise CUDA
        weights_file = resolve_weights_file(self.config.weights)
        check_weights_identity(self.config.weights, weights_file, self.config.weights_sha256)
        if self._model_factory is not None:
            model = self._model_factory(self.config)
        else:
            from models.extractor import reusable_extractor

            model = reusable_extractor(self.config, weights_file)
        where = describe_process(target, copy=copy, pinned=pinned)
        where["listing"] = listing.source
        freeze_long_lived("model")  # TensorFlow and the model live as long as this process
        return PlacedModel(model, where)

    def run_inference(self, batch: Sequence[np.ndarray], model: LayerModel,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        for index, example in enumerate(batch):  # each example named, before stacking
            assert_shape(np.asarray(example), self.config.input_shape, stage=STAGE_EXTRACT,
                         uri=f"<example {index} of the batch>", image_id=None, dtype=np.uint8)
        outputs = model(np.stack(batch))
        self.check_outputs(outputs, len(batch), uri="<batch>", image_id=None)
        return [PredictionResult(example, {layer: outputs[layer][row] for layer in self.config.layers},
                                 self.config.embedding_key)
                for row, example in enumerate(batch)]

    def check_input(self, pixels: np.ndarray, *, uri: str, image_id: str | None) -> None:
        assert_shape(pixels, (len(pixels),) + self.config.input_shape, stage=STAGE_EXTRACT,
                     uri=uri, image_id=image_id, dtype=np.uint8)

    def check_outputs(self, outputs: dict, n: int, *, uri: str, image_id: str | None) -> None:
        if not isinstance(outputs, dict) or set(outputs) != set(self.config.layers):
            found = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
            raise ShapeContractError(stage=STAGE_EXTRACT, uri=uri, image_id=image_id,
                                     expected=self.config.layers, actual=tuple(found))
        for layer in self.config.layers:
            assert_shape(outputs[layer], (n,) + self.config.embedding_shape(layer), stage=STAGE_EXTRACT,
                         uri=uri, image_id=image_id, dtype=np.dtype(self.config.output_dtype))

    def get_resource_hints(self) -> dict:
        return {"accelerator": self.accelerator} if self.accelerator else {}

    def __repr__(self) -> str:
        return (f"ResNet50Handler(layers={list(self.config.layers)}, key={self.config.embedding_key}, "
                f"model_copies={self._model_copies}, accelerator={self.accelerator!r})")


class PlacedModel:
    """A LayerModel with the record of where it was placed: calls go to ``model``;
    ``describe()`` is the placement (host, pid, copy, GPU, CUDA_VISIBLE_DEVICES) plus the
    model's own ``describe()`` (device, precision, XLA, batch size, certificate) when it has
    one. Other attributes are the model's."""

    def __init__(self, model: LayerModel, placement: dict):
        self.model = model
        self.placement = placement

    def __call__(self, pixels: np.ndarray) -> dict:
        return self.model(pixels)

    def describe(self) -> dict:
        own = self.model.describe() if hasattr(self.model, "describe") else {"model": type(self.model).__name__}
        return {**self.placement, **own}

    def __getattr__(self, name):
        return getattr(self.model, name)
