"""resnet50-device: one command that says how well this machine runs the extractor.

Per device (each GPU the driver lists, else the CPU): images/s of the model alone at each
batch size, in float32 and each reduced precision the device supports, with XLA off and
on; the per-layer min cosine of each reduced precision against float32; this machine's
decode feed per vCPU; the flags to use and how many vCPUs feed one GPU (docs/gpus.md)."""
