"""The Ray engine: the same library functions as the local engine, mapped over partitions on a Ray cluster."""
