"""NetAdapt's loop: shrink one width per iteration, by the best accuracy change per millisecond saved.

Each iteration: the target drops one step below the current model's measured latency; for every settable
width (a block's expansion, a stage's output) the proposal is that width reduced just enough for the
latency *estimated from the table* to meet the target (searched on the 8-channel grid: one granule, then
extrapolated from what that saved, ``SEARCH_ROUNDS`` times); each proposal gets the current weights (kept by
magnitude), a short fine-tune and an accuracy; the proposal with the best dAccuracy/|dLatency| is measured
whole on the target and becomes the current model. At the budget (or when nothing meets the target), one
long fine-tune. ``trace.csv`` gets a row per proposal as it is decided; Ctrl-C writes the current model.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mobilenets_tf.config import ModelConfig, configure

from .budget import Budget
from .latency import LatencyTable, Target, fill
from .proposals import Proposal, best, estimate_ms, narrower, objective, pack, touched, with_width

SEARCH_ROUNDS = 3
TRACE_FIELDS = ("iteration", "proposal", "layers_changed", "widths", "latency_target_ms",
                "latency_estimated_ms", "latency_measured_ms", "short_top1", "objective", "chosen")


@dataclass(frozen=True)
class AdaptOptions:
    step: float = 0.01                 # latency saved per iteration, fraction of the starting latency
    short_steps: int = 100             # fine-tuning steps per proposal
    long_epochs: int = 10              # epochs of the final fine-tune (and of a start without weights)
    batch_size: int = 32
    learning_rate: float = 5e-4        # short-term fine-tuning (Adam)
    max_iterations: int = 200
    max_proposals: int = 0             # 0: fine-tune every proposal; K: the K removing the least filter norm
    flip: bool = True
    seed: int = 0


class Trace:
    """``trace.csv``, appended and flushed row by row (nothing decided is lost on Ctrl-C)."""

    def __init__(self, path: Path):
        self.path, self.rows = path, []
        with open(path, "w", newline="", encoding="utf-8") as file:
            csv.DictWriter(file, TRACE_FIELDS).writeheader()

    def add(self, **row) -> None:
        row = {field: row.get(field, "") for field in TRACE_FIELDS}
        self.rows.append(row)
        with open(self.path, "a", newline="", encoding="utf-8") as file:
            csv.DictWriter(file, TRACE_FIELDS).writerow(row)


def search(current: ModelConfig, current_ms: float, target_ms: float, table: LatencyTable, device: Target) \
        -> list[tuple[Proposal, float]]:
    """Per settable width, the widest narrower width whose estimate meets ``target_ms``, with the estimate.

    When no width alone can meet the target (a step larger than any one layer's share), the proposals are
    the narrowest each width reached that saves anything: the iteration then saves less than a step.
    """
    widths = current.plan().widths()
    steps = {key: 1 for key in widths if narrower(widths[key], 1) is not None}
    found: dict[str, tuple[Proposal, float]] = {}
    effort: dict[str, tuple[Proposal, float]] = {}
    for _ in range(SEARCH_ROUNDS):
        if not steps:
            break
        narrowed = {key: narrower(widths[key], n) for key, n in steps.items()}
        proposals = [Proposal(key, width, with_width(current, key, width)) for key, width in narrowed.items()]
        fill(table, device, [current] + [probe for probe, _ in pack(current, proposals)])
        next_steps = {}
        for proposal in proposals:
            estimate = estimate_ms(current_ms, current, proposal.config, table)
            n = steps[proposal.key]
            if estimate <= target_ms:
                found[proposal.key] = (proposal, estimate)
                continue
            if estimate < current_ms:
                effort[proposal.key] = (proposal, estimate)
            saved_per_step = (current_ms - estimate) / n
            wanted = math.ceil((current_ms - target_ms) / saved_per_step) if saved_per_step > 0 else 2 * n
            wanted = max(n + 1, wanted)
            while wanted > n and narrower(widths[proposal.key], wanted) is None:
                wanted -= 1                # the narrowest the grid allows
            if wanted > n:
                next_steps[proposal.key] = wanted
        steps = next_steps
    chosen = found or effort
    return [chosen[key] for key in widths if key in chosen]


def adapt(config: ModelConfig, data, out: Path, device: Target, table: LatencyTable, *,
          weights: Path | None = None, budget_ms: float | None = None, budget_ratio: float | None = None,
          options: AdaptOptions = AdaptOptions(), progress: bool = True, log=print) -> dict:
    """Adapt ``config`` (and ``weights``) to the latency budget on ``device``; write the outputs in
    ``out``.

    On Ctrl-C, or an error once a model has been chosen, ``out`` keeps the trace and
    ``adapted.weights.h5``: the last model chosen (the start before the first choice), without the long
    fine-tune until that has finished. The working folder ``out/.work`` is removed on every exit that runs
    Python's cleanup (not on SIGKILL).
    """
    work = Path(out) / ".work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _adapt(config, data, Path(out), work, device, table, weights, budget_ms, budget_ratio, options,
                      progress, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _adapt(config: ModelConfig, data, out: Path, work: Path, device: Target, table: LatencyTable,
           weights: Path | None, budget_ms: float | None, budget_ratio: float | None, options: AdaptOptions,
           progress: bool, log) -> dict:
    from mobilenets_tf.builder import build_from_config  # first: imports TensorFlow quietly

    import keras
    from tqdm import tqdm

    from mnbench.accuracy.finetune import FinetuneOptions, finetune, initial_weights
    from mnbench.accuracy.weights_file import write_sidecar, write_weights

    from .carry import carry_weights, norm_removed
    from .training import ShortTraining

    started = time.perf_counter()
    trace = Trace(out / "trace.csv")
    adapted = out / "adapted.weights.h5"
    finetune_options = FinetuneOptions(epochs=options.long_epochs, batch_size=options.batch_size,
                                       flip=options.flip, seed=options.seed)
    if weights is None:
        log(f"no --weights: training the starting model for {options.long_epochs} epochs first")
        weights = work / "start.weights.h5"
        finetune(config, data, weights, options=finetune_options, force=True)
    keras.utils.set_random_seed(options.seed)
    model = build_from_config(config)
    initial_weights(model, config, Path(weights))
    trainer = ShortTraining(data, config, batch_size=options.batch_size, learning_rate=options.learning_rate,
                            flip=options.flip, seed=options.seed)
    # ``iteration``: the iterations done (a model chosen in each); ``model`` and ``current`` the last chosen
    current, iteration, stop = config, 0, "budget met"

    def save(path: Path, note: str) -> None:
        """The last chosen model and its configuration (the weights written whole, then the sidecar)."""
        write_weights(model, path)
        write_sidecar(path, current, data.class_names, {"adapt": note, "data": data.source})

    try:
        start_ms = device.whole_ms({"start": config})["start"]
        budget = Budget.make(start_ms, budget_ms, budget_ratio, options.step)
        current_ms, current_top1 = start_ms, trainer.accuracy(model)
        log(f"start: {start_ms:.3f} ms measured, top-1 {current_top1:.3f}; budget {budget.budget_ms:.3f} ms, "
            f"step {budget.step_ms:.3f} ms; latency table: {table.loaded} shapes cached")
        trace.add(iteration=0, proposal="start", widths=json.dumps(config.widths),
                  latency_measured_ms=f"{start_ms:.4f}", short_top1=f"{current_top1:.4f}", chosen=1)
        while not budget.met(current_ms):
            if iteration >= options.max_iterations:
                stop = f"stopped after {options.max_iterations} iterations"
                break
            number = iteration + 1
            target_ms = budget.target(current_ms)
            found = search(current, current_ms, target_ms, table, device)
            if not found:
                stop = "no width can shrink and save latency (every width at its minimum or saving nothing)"
                break
            if options.max_proposals and len(found) > options.max_proposals:
                found = sorted(found, key=lambda pair: norm_removed(model, current, pair[0].key,
                                                                    pair[0].width))[:options.max_proposals]
            rows = []
            for proposal, estimate in tqdm(found, desc=f"iteration {number}", unit="proposal",
                                           disable=not progress, leave=False):
                candidate = build_from_config(proposal.config)
                carry_weights(model, candidate, proposal.config)
                trainer.tune(candidate, options.short_steps)
                top1 = trainer.accuracy(candidate)
                rows.append({"proposal": proposal, "estimate": estimate, "top1": top1, "model": candidate,
                             "objective": objective(top1 - current_top1, estimate - current_ms)})
            chosen = best(rows)
            measured = device.whole_ms({"chosen": chosen["proposal"].config})["chosen"]
            for row in rows:
                proposal = row["proposal"]
                trace.add(iteration=number, proposal=f"{proposal.key}={proposal.width}",
                          layers_changed=" ".join(sorted(touched(current, proposal.config))),
                          widths=json.dumps(proposal.config.widths), latency_target_ms=f"{target_ms:.4f}",
                          latency_estimated_ms=f"{row['estimate']:.4f}",
                          latency_measured_ms=f"{measured:.4f}" if row is chosen else "",
                          short_top1=f"{row['top1']:.4f}", objective=f"{row['objective']:.5g}",
                          chosen=int(row is chosen))
            # one assignment, so a Ctrl-C never pairs one iteration's widths with another's model
            current, current_ms, current_top1, model, iteration = (
                chosen["proposal"].config, measured, chosen["top1"], chosen["model"], number)
            log(f"iteration {number}: {chosen['proposal'].key}={chosen['proposal'].width}, estimated "
                f"{chosen['estimate']:.3f} ms, measured {measured:.3f} ms, "
                f"short-term top-1 {current_top1:.3f} ({len(rows)} proposals)")
        save(adapted, f"after {iteration} iterations, without the long fine-tune (not run yet, or "
             "interrupted)")
    except BaseException as error:   # Ctrl-C, or a target lost mid-search: keep what was chosen
        _keep_after_failure(error, iteration, save, adapted, out, log)
        raise
    carried = work / "adapted-short.weights.h5"   # the long fine-tune starts from here and replaces `adapted`
    try:
        save(carried, f"after {iteration} iterations, before the long fine-tune")
        keras.backend.clear_session()
        trained = finetune(current, data, adapted, weights=carried, options=finetune_options, force=True)
    except KeyboardInterrupt:
        log(f"interrupted: {adapted} holds the model of iteration {iteration}, without the long fine-tune; "
            f"trace in {out / 'trace.csv'}")
        raise
    final = {"adapted": current, "start": config}
    final.update({f"uniform a{alpha:g}": configure(config.version, alpha, config.resolution,
                                                   config.num_classes, knobs=config.knobs)
                  for alpha in sorted({*config.spec.canonical_alphas, 0.5}) if alpha < config.alpha})
    measured = device.whole_ms(final)
    result = {"config": current.as_dict(), "start_ms": start_ms, "budget_ms": budget.budget_ms,
              "step_ms": budget.step_ms, "final_ms": measured["adapted"], "verdict": budget.shortfall(
                  measured["adapted"]), "stop": stop, "iterations": iteration,
              "final_top1": trained["batchnorm"].get("val_top1"), "start_top1": trace.rows[0]["short_top1"],
              "latency_ms": measured, "macs": {name: c.cost().macs for name, c in final.items()},
              "table": {"path": str(table.path) if table.path else None, "shapes": len(table.samples),
                        "cached_at_start": table.loaded},
              "target": device.name, "quant": device.quant, "threads": device.threads,
              "options": dataclasses.asdict(options), "seconds": round(time.perf_counter() - started, 1)}
    (out / "adapt.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _keep_after_failure(error: BaseException, iteration: int, save, adapted: Path, out: Path, log) -> None:
    """On Ctrl-C, or an error once a model has been chosen: write the last chosen model (the start model
    before any), say so; a failure to write it leaves the original error to be reported."""
    interrupted = isinstance(error, KeyboardInterrupt)
    if not (interrupted or iteration):
        return
    what = "the starting model" if iteration == 0 else \
        f"the model chosen in iteration {iteration}, after its short fine-tune"
    how = "interrupted" if interrupted else "stopped by an error"
    with contextlib.suppress(Exception):
        save(adapted, f"{how} after {iteration} iterations: {what}, without the long fine-tune")
        log(f"{how}: {adapted} holds the model of iteration {iteration}; trace in {out / 'trace.csv'}")
