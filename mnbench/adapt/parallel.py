"""An iteration's short fine-tunes: one after another in this process, or in parallel on Ray (``--ray``).

The proposals of one iteration are independent: each starts from the current model's weights, is tuned on
its own and scored. ``tune_proposal`` is that whole job, seeded from (run seed, iteration, proposal), so the
result of a proposal does not depend on which process ran it or on what ran before it there: a run on Ray
chooses the same model as a serial run with the same seed. Ray is imported only by ``RayPool``; the latency
side (table probes, whole-model timings, the confirmation) stays in the driver, one thing at a time, so no
fine-tune runs beside a timing on the machine that times.
"""

from __future__ import annotations

import os
import time
import zlib

from mnbench.errors import MnbenchError


def proposal_seed(seed: int, iteration: int, key: str) -> int:
    """The seed of one proposal's fine-tune: the same wherever and whenever it runs."""
    return zlib.crc32(f"{seed}/{iteration}/{key}".encode()) & 0x7FFFFFFF


def tune_proposal(source, config, trainer, steps: int, seed: int) -> dict:
    """``config`` with ``source``'s weights carried in (kept by magnitude), ``steps`` short fine-tuning
    steps, its validation top-1. Returns ``top1``, ``weights`` (after BatchNorm statistics are re-set) and
    ``seconds``."""
    from mobilenets_tf.builder import build_from_config  # first: imports TensorFlow quietly

    import keras

    from .carry import carry_weights

    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    candidate = build_from_config(config)
    carry_weights(source, candidate, config)
    trainer.tune(candidate, steps)
    top1 = trainer.accuracy(candidate)
    return {"top1": top1, "weights": candidate.get_weights(), "seconds": time.perf_counter() - started}


class Serial:
    """Every proposal in this process, in order."""

    workers = 1

    def map(self, model, current, jobs, trainer, steps: int, on_done=lambda: None) -> list[dict]:
        """``jobs``: (configuration, seed) per proposal; results in the same order."""
        results = []
        for config, seed in jobs:
            results.append(tune_proposal(model, config, trainer, steps, seed))
            on_done()
        return results

    def close(self) -> None:
        pass


def _tune_remote(current, weights, config, trainer, steps: int, seed: int) -> dict:
    """A Ray task: the current model rebuilt from its weights, then ``tune_proposal``."""
    from mobilenets_tf.builder import build_from_config

    _one_thread_per_task()
    source = build_from_config(current)
    source.set_weights(weights)
    return tune_proposal(source, config, trainer, steps, seed)


def _one_thread_per_task() -> None:
    """TensorFlow in a Ray worker: as many threads as the task holds CPUs (1), not one per core."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:     # set by an earlier task in this worker
        pass


class RayPool:
    """Proposals as Ray tasks of one CPU each: on a local Ray of ``workers`` CPUs (``address`` "auto") or on
    a running cluster (``address`` its address, e.g. ``ray://head:10001`` or ``head:6379``; every node needs
    mnbench installed). A local Ray is shut down by ``close``."""

    def __init__(self, address: str, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise MnbenchError("--ray needs Ray: pip install 'mnbench[ray]'") from None
        self.ray, self.started = ray, False
        if not ray.is_initialized():
            if address == "auto":
                self.workers = workers or os.cpu_count() or 1
                # the driver's import path travels to the workers (a source checkout, PYTHONPATH)
                path = os.pathsep.join(p for p in [os.environ.get("PYTHONPATH"), os.getcwd()] if p)
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": path}})
            else:
                ray.init(address=address, log_to_driver=False)
            self.started = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self.task = ray.remote(num_cpus=1)(_tune_remote)
        self.trainer_ref = None

    def map(self, model, current, jobs, trainer, steps: int, on_done=lambda: None) -> list[dict]:
        ray = self.ray
        if self.trainer_ref is None or self.trainer_ref[0] is not trainer:
            self.trainer_ref = (trainer, ray.put(trainer))
        weights = ray.put(model.get_weights())
        refs = [self.task.remote(current, weights, config, self.trainer_ref[1], steps, seed)
                for config, seed in jobs]
        try:
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                on_done()
            return ray.get(refs)
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False
