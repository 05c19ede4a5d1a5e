"""What runs inside the job: the graph's composition (``build``), its last step
(``finalize``: the accounting check and manifest) and the local progress counts
(``counting``)."""
