"""Where the offline stages run (`engine.Engine`): this process, or the same library functions mapped over blocks,
partitions, workers and actors on a Ray cluster."""
