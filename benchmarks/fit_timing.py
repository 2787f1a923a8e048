"""Shared by the benchmarks: the training step's throughput on one batch held in memory."""
import time


def examples_per_second(trainer, batch, batch_size: int, steps: int) -> float:
    """`trainer` (compiled) fit on `batch` (a dataset of one batch) repeated: 2 untimed steps
    pay for tracing/XLA compilation, then `steps` timed ones."""
    one = batch.take(1).cache()
    trainer.fit(one.repeat(2), epochs=1, verbose=0)
    start = time.perf_counter()
    trainer.fit(one.repeat(steps), epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)
