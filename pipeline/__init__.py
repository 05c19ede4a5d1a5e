"""The extraction job around the transforms, in three rooms:

- the launcher (this package's modules): options, plan, run, local, lock, outputs,
  incremental, manifest, progress, template;
- ``pipeline.job``: what runs inside the job (composition, FinalizeRun, progress counts);
- ``pipeline.inspection``: tools that read finished outputs (results, reports, neighbors,
  featuremaps, and the ``resnet50-inspect`` CLI).

The architecture map, one line per module, is in the README."""
