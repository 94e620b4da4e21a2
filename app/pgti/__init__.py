"""pgti: memory-efficient distributed training of spatiotemporal GNNs.

Index-batching over one raw array, one MPI node-shared copy of the data per node, and a
Horovod (or DDP) allreduce. See README.md and DESIGN.md.
"""

__version__ = "0.1.0"
