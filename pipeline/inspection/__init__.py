"""Tools that read a run's outputs, never run inside the job: ``results`` (a layer as a
matrix or a pyarrow dataset), ``reports`` (shapes table, run summary), ``neighbors``,
``featuremaps`` (the PNG; needs the ``featuremaps`` extra) and ``cli``, the
``python -m pipeline.inspection`` / ``resnet50-inspect`` command."""
