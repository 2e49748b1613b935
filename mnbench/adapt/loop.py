"""NetAdapt's loop: shrink one width per iteration, by the best accuracy change per millisecond saved.

Each iteration: the target drops one step below the current model's measured latency; for every settable
width (a block's expansion, a stage's output) the proposal is that width reduced just enough for the
latency *estimated from the table* to meet the target (searched on the 8-channel grid: one granule, then
extrapolated from what that saved, ``SEARCH_ROUNDS`` times; never below the width's floor); the proposals are
ranked by the filter norm they remove per millisecond saved and the best ``max_proposals`` get the current
weights (kept by magnitude), a short fine-tune and an accuracy (``parallel``: here or on Ray); the one with
the best dAccuracy/|dLatency| is measured whole on the target and becomes the current model. At the budget
the adapted model is timed against the start in interleaved processes (``confirm``); when the interval
reaches over the budget, another step. Then one long fine-tune. ``trace.csv`` gets a row per proposal as it
is decided, with where the time went; the model and the run's state are saved after every iteration, so
``--resume`` continues an interrupted run and Ctrl-C loses nothing chosen.
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
from .errors import AdaptError
from .latency import LatencyTable, Target, fill
from .parallel import Serial, proposal_seed
from .proposals import (GRANULE, Proposal, best, estimate_ms, floors, narrower, objective, pack, touched,
                        with_width)

SEARCH_ROUNDS = 3
TRACE_FIELDS = ("iteration", "proposal", "layers_changed", "widths", "latency_target_ms",
                "latency_estimated_ms", "latency_measured_ms", "short_top1", "objective", "chosen",
                "finetune_s", "latency_s", "iteration_s")
STATE = "adapt_state"          # the key of the run's state in the sidecar's "training" record


@dataclass(frozen=True)
class AdaptOptions:
    step: float | None = None          # latency saved per iteration as a fraction of the start; None: derived
    iterations: int = 2                # ... so that this many iterations reach the budget (step None)
    short_steps: int = 10              # fine-tuning steps per proposal
    long_epochs: int = 10              # epochs of the final fine-tune (and of a start without weights)
    batch_size: int = 32
    learning_rate: float = 5e-4        # short-term fine-tuning (Adam)
    max_iterations: int = 200
    max_proposals: int = 3             # 0: fine-tune every proposal; K: the K best by norm removed per ms
    floor: float = 0.25                # no width below this fraction of its starting width (and 8)
    confirm_secs: float = 60.0         # interleaved confirmation of the budget; 0: none (a single timing)
    confirm_steps: int = 2             # extra steps at most when the confirmation's interval reaches over
    flip: bool = True
    seed: int = 0


class Trace:
    """``trace.csv``, appended and flushed row by row (nothing decided is lost on Ctrl-C).

    ``keep``: continue an existing trace, keeping its rows up to that iteration (a resumed run)."""

    def __init__(self, path: Path, keep: int | None = None):
        self.path, self.rows = path, []
        if keep is not None:
            with open(path, newline="", encoding="utf-8") as file:
                self.rows = [{field: row.get(field) or "" for field in TRACE_FIELDS}
                             for row in csv.DictReader(file) if int(row["iteration"]) <= keep]
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, TRACE_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)

    def add(self, **row) -> None:
        row = {field: row.get(field, "") for field in TRACE_FIELDS}
        self.rows.append(row)
        with open(self.path, "a", newline="", encoding="utf-8") as file:
            csv.DictWriter(file, TRACE_FIELDS).writerow(row)


def search(current: ModelConfig, current_ms: float, target_ms: float, table: LatencyTable, device: Target,
           floor: dict[str, int] | None = None) -> list[tuple[Proposal, float]]:
    """Per settable width, the widest narrower width whose estimate meets ``target_ms``, with the estimate;
    no width below its ``floor`` (default: one granule).

    When no width alone can meet the target (a step larger than any one layer's share), the proposals are
    the narrowest each width reached that saves anything: the iteration then saves less than a step.
    """
    widths = current.plan().widths()
    floor = floor or {}

    def narrowed_by(key: str, n: int) -> int | None:
        return narrower(widths[key], n, floor.get(key, GRANULE))

    steps = {key: _first_guess(current, key, widths[key], narrowed_by, (current_ms - target_ms) / current_ms)
             for key in widths if narrowed_by(key, 1) is not None}
    found: dict[str, tuple[Proposal, float]] = {}
    effort: dict[str, tuple[Proposal, float]] = {}
    for _ in range(SEARCH_ROUNDS):
        if not steps:
            break
        narrowed = {key: narrowed_by(key, n) for key, n in steps.items()}
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
            while wanted > n and narrowed_by(proposal.key, wanted) is None:
                wanted -= 1                # the narrowest the grid allows
            if wanted > n:
                next_steps[proposal.key] = wanted
        steps = next_steps
    chosen = found or effort
    return [chosen[key] for key in widths if key in chosen]


def _first_guess(current: ModelConfig, key: str, width: int, narrowed_by, share: float) -> int:
    """Granules to remove first from ``key`` to save ``share`` of the latency, if latency went as the
    Mult-Adds (three quarters of that, rounded down, so that the table's extrapolation narrows it further
    rather than the guess overshooting the widest width that meets the target); at least 1."""
    macs = current.cost().macs
    saved = 1 - with_width(current, key, narrowed_by(key, 1)).cost().macs / macs
    guess = max(1, math.floor(0.75 * share / saved)) if saved > 0 else 1
    while guess > 1 and narrowed_by(key, guess) is None:
        guess -= 1
    return guess


def adapt(config: ModelConfig, data, out: Path, device: Target, table: LatencyTable, *,
          weights: Path | None = None, budget_ms: float | None = None, budget_ratio: float | None = None,
          options: AdaptOptions = AdaptOptions(), progress: bool = True, log=print, pool=None,
          resume: dict | None = None, data_path: Path | None = None) -> dict:
    """Adapt ``config`` (and ``weights``) to the latency budget on ``device``; write the outputs in
    ``out``.

    ``pool``: runs the short fine-tunes (``parallel.Serial`` by default, ``parallel.RayPool``). ``resume``:
    the state of an interrupted run in ``out`` (``resume_state``); ``config``, ``weights``, the budget and
    ``options`` then come from it. ``data_path`` is recorded for ``--resume``.

    On Ctrl-C, or an error once a model has been chosen, ``out`` keeps the trace and
    ``adapted.weights.h5``: the last model chosen (the start before the first choice), without the long
    fine-tune until that has finished. The working folder ``out/.work`` is removed on every exit that runs
    Python's cleanup (not on SIGKILL).
    """
    work = Path(out) / ".work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        run = _Run(config, data, Path(out), work, device, table, options, pool or Serial(), progress, log,
                   data_path)
        return run.run(weights, budget_ms, budget_ratio, resume)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def resume_state(out: Path) -> dict:
    """What ``--resume OUT`` continues from: the saved model's configuration and the run's state.

    Raises:
        AdaptError: OUT holds no interrupted adapt run (no saved model or state, or a finished run).
    """
    from mnbench.accuracy.weights_file import read_sidecar

    out = Path(out)
    if (out / "adapt.json").is_file():
        raise AdaptError(f"--resume {out}: that run finished (adapt.json is there); nothing to continue")
    path = out / "adapted.weights.h5"
    carried = read_sidecar(path) if path.is_file() else None
    state = (carried.record.get("training") or {}).get(STATE) if carried else None
    if not state or not (out / "trace.csv").is_file():
        raise AdaptError(f"--resume {out}: no interrupted adapt run there (adapted.weights.h5 with its "
                         "state, and trace.csv)")
    return {"config": carried.config, "weights": path, "state": state}


def _key_width(proposal: Proposal) -> tuple[str, int]:
    return proposal.key, proposal.width


class _Run:
    """One adapt run's state and steps; the current model and its figures change together (``take``)."""

    def __init__(self, config, data, out, work, device, table, options, pool, progress, log, data_path):
        self.start, self.data, self.out, self.work = config, data, out, work
        self.device, self.table, self.options, self.pool = device, table, options, pool
        self.progress, self.log, self.data_path = progress, log, data_path
        self.adapted = out / "adapted.weights.h5"
        # ``iteration``: the iterations done (a model chosen in each); ``model``/``current``: the last chosen
        self.current, self.iteration, self.model = config, 0, None
        self.current_ms = self.current_top1 = None
        self.budget, self.floor, self.confirmation = None, {}, None
        self.seconds_before = 0.0              # spent by the run(s) this one resumes

    # ---- the run ---------------------------------------------------------------------------------------

    def run(self, weights, budget_ms, budget_ratio, resume) -> dict:
        from mobilenets_tf.builder import build_from_config  # first: imports TensorFlow quietly

        import keras

        from mnbench.accuracy.finetune import finetune, initial_weights

        from .training import ShortTraining

        self.started = time.perf_counter()
        options = self.options
        if resume is None and weights is None:
            self.log(f"no --weights: training the starting model for {options.long_epochs} epochs first")
            weights = self.work / "start.weights.h5"
            finetune(self.start, self.data, weights, options=self._long_options(), force=True)
        self.trainer = ShortTraining(self.data, self.start, batch_size=options.batch_size, flip=options.flip,
                                     learning_rate=options.learning_rate, seed=options.seed)
        keras.utils.set_random_seed(options.seed)
        if resume is not None:
            self._restore(resume)
            self.model = build_from_config(self.current)
            initial_weights(self.model, self.current, resume["weights"])
        else:
            self.model = build_from_config(self.start)
            initial_weights(self.model, self.start, Path(weights))
        stop = "budget met"
        try:
            if resume is None:
                self._measure_start(budget_ms, budget_ratio)
            while not self.budget.met(self.current_ms):
                if self.iteration >= options.max_iterations:
                    stop = f"stopped after {options.max_iterations} iterations"
                    break
                if not self.step(self.budget.target(self.current_ms)):
                    stop = "no width can shrink and save latency (every width at its floor or saving nothing)"
                    break
            stop = self._confirm(stop)
            self._save(self.adapted, f"after {self.iteration} iterations, without the long fine-tune (not "
                       "run yet, or interrupted)")
        except BaseException as error:   # Ctrl-C, or a target lost mid-search: keep what was chosen
            self._keep_after_failure(error)
            raise
        carried = self.work / "adapted-short.weights.h5"   # the long fine-tune starts here, then `adapted`
        try:
            self._save(carried, f"after {self.iteration} iterations, before the long fine-tune")
            keras.backend.clear_session()
            trained = finetune(self.current, self.data, self.adapted, weights=carried,
                               options=self._long_options(), force=True)
        except KeyboardInterrupt:
            self.log(f"interrupted: {self.adapted} holds the model of iteration {self.iteration}, without "
                     f"the long fine-tune; trace in {self.out / 'trace.csv'}")
            raise
        return self._finish(stop, trained)

    def step(self, target_ms: float) -> bool:
        """One iteration towards ``target_ms``: proposals, fine-tunes, the best one measured and taken.
        False when no width can meet it or save anything."""
        from mobilenets_tf.builder import build_from_config

        from .carry import norm_removed

        began, number, current, current_ms = time.perf_counter(), self.iteration + 1, self.current, \
            self.current_ms
        found = search(current, current_ms, target_ms, self.table, self.device, self.floor)
        searched = time.perf_counter()
        if not found:
            return False
        if self.options.max_proposals and len(found) > self.options.max_proposals:
            # ranked before fine-tuning: filter norm removed (a magnitude proxy of accuracy lost) per ms saved
            found = sorted(found, key=lambda pair: norm_removed(self.model, current, *_key_width(pair[0]))
                           / max(current_ms - pair[1], 1e-6))[:self.options.max_proposals]
        jobs = [(proposal.config, proposal_seed(self.options.seed, number, proposal.key))
                for proposal, _ in found]
        from tqdm import tqdm

        with tqdm(total=len(jobs), desc=f"iteration {number}", unit="proposal", disable=not self.progress,
                  leave=False) as bar:
            results = self.pool.map(self.model, current, jobs, self.trainer, self.options.short_steps,
                                    on_done=bar.update)
        tuned = time.perf_counter()
        rows = [{"proposal": proposal, "estimate": estimate, "top1": result["top1"], "result": result,
                 "objective": objective(result["top1"] - self.current_top1, estimate - current_ms)}
                for (proposal, estimate), result in zip(found, results)]
        chosen = best(rows)
        # timed with the start in the same interleaved rounds: the machine's speed drifts (2-4 % between
        # rounds on a shared machine, more under changing load), their ratio much less
        timed = self.device.whole_ms({"start": self.start, "chosen": chosen["proposal"].config})
        measured = self.budget.start_ms * timed["chosen"] / timed["start"]
        latency_s = (searched - began) + (time.perf_counter() - tuned)
        for row in rows:
            proposal, is_chosen = row["proposal"], row is chosen
            self.trace.add(iteration=number, proposal=f"{proposal.key}={proposal.width}",
                           layers_changed=" ".join(sorted(touched(current, proposal.config))),
                           widths=json.dumps(proposal.config.widths), latency_target_ms=f"{target_ms:.4f}",
                           latency_estimated_ms=f"{row['estimate']:.4f}",
                           latency_measured_ms=f"{measured:.4f}" if is_chosen else "",
                           short_top1=f"{row['top1']:.4f}", objective=f"{row['objective']:.5g}",
                           chosen=int(is_chosen), finetune_s=f"{row['result']['seconds']:.2f}",
                           latency_s=f"{latency_s:.2f}" if is_chosen else "",
                           iteration_s=f"{time.perf_counter() - began:.2f}" if is_chosen else "")
        model = build_from_config(chosen["proposal"].config)
        model.set_weights(chosen["result"]["weights"])
        # one assignment, so a Ctrl-C never pairs one iteration's widths with another's model
        self.current, self.current_ms, self.current_top1, self.model, self.iteration = (
            chosen["proposal"].config, measured, chosen["top1"], model, number)
        self._save(self.adapted, f"after {number} iterations, without the long fine-tune (not run yet, or "
                   "interrupted)")
        self.log(f"iteration {number}: {chosen['proposal'].key}={chosen['proposal'].width}, estimated "
                 f"{chosen['estimate']:.3f} ms, measured {measured:.3f} ms, short-term top-1 "
                 f"{self.current_top1:.3f} ({len(rows)} proposals; {time.perf_counter() - began:.0f} s: "
                 f"latency {latency_s:.0f} s, fine-tuning {tuned - searched:.0f} s); {self._outlook()}")
        return True

    # ---- parts -----------------------------------------------------------------------------------------

    def _measure_start(self, budget_ms, budget_ratio) -> None:
        options = self.options
        began = time.perf_counter()
        start_ms = self.device.whole_ms({"start": self.start})["start"]
        self.budget = Budget.make(start_ms, budget_ms, budget_ratio, options.step, options.iterations)
        self.floor = floors(self.start.plan().widths(), options.floor)
        self.current_ms, self.current_top1 = start_ms, self.trainer.accuracy(self.model)
        self.trace = Trace(self.out / "trace.csv")
        self.trace.add(iteration=0, proposal="start", widths=json.dumps(self.start.widths),
                       latency_measured_ms=f"{start_ms:.4f}", short_top1=f"{self.current_top1:.4f}", chosen=1,
                       latency_s=f"{time.perf_counter() - began:.2f}")
        self._save(self.adapted, "after 0 iterations: the starting model")
        self.log(f"start: {start_ms:.3f} ms measured, top-1 {self.current_top1:.3f}; budget "
                 f"{self.budget.budget_ms:.3f} ms, step {self.budget.step_ms:.3f} ms "
                 f"(~{self.budget.left(start_ms)} iterations); latency table: {self.table.loaded} shapes "
                 "cached")

    def _confirm(self, stop: str) -> str:
        """Confirm the budget against the start in interleaved processes; another step while the interval
        reaches over it (``confirm_steps`` at most). Returns the stop reason."""
        from .confirm import confirm

        options = self.options
        if not options.confirm_secs:
            return stop
        for extra in range(options.confirm_steps + 1):
            files = self.device.files({"start": self.start, "adapted": self.current})
            self.confirmation = confirm(files["start"], files["adapted"], self.budget.ratio,
                                        self.device.pair_runner(), self.device.threads, options.confirm_secs,
                                        options.seed + extra)
            self.log(f"confirmation: {self.confirmation.words(self.budget.start_ms)}")
            if self.confirmation.met or stop != "budget met":
                return stop
            if extra == options.confirm_steps:
                return f"the interval still reaches over the budget after {extra} extra step(s)"
            # save what the interval's top says is missing, as a share of the current latency
            target_ms = self.current_ms * self.budget.ratio / self.confirmation.high
            self.log(f"another step: to {target_ms:.3f} ms (the interval's top over the budget)")
            if not self.step(min(target_ms, self.current_ms * (1 - 1e-3))):
                return "the interval reaches over the budget and no width can shrink and save latency"
        return stop

    def _finish(self, stop: str, trained: dict) -> dict:
        start, current, device = self.start, self.current, self.device
        final = {"adapted": current, "start": start}
        final.update({f"uniform a{alpha:g}": configure(start.version, alpha, start.resolution,
                                                       start.num_classes, knobs=start.knobs)
                      for alpha in sorted({*start.spec.canonical_alphas, 0.5}) if alpha < start.alpha})
        measured = device.whole_ms(final)
        seconds = self.seconds_before + time.perf_counter() - self.started
        if self.confirmation is None:
            verdict = self.budget.shortfall(measured["adapted"])
        elif self.confirmation.met:
            verdict = f"within the budget, confirmed: {self.confirmation.words(self.budget.start_ms)}"
        else:
            verdict = f"budget NOT confirmed: {self.confirmation.words(self.budget.start_ms)}"
        result = {"config": current.as_dict(), "start_ms": self.budget.start_ms,
                  "budget_ms": self.budget.budget_ms, "step_ms": self.budget.step_ms,
                  "final_ms": measured["adapted"], "verdict": verdict, "stop": stop,
                  "confirmation": self.confirmation.as_dict() if self.confirmation else None,
                  "iterations": self.iteration, "final_top1": trained["batchnorm"].get("val_top1"),
                  "long_epochs_run": trained.get("epochs_run"), "train_images": trained.get("train_images"),
                  "start_top1": self.trace.rows[0]["short_top1"], "latency_ms": measured,
                  "macs": {name: c.cost().macs for name, c in final.items()},
                  "table": {"path": str(self.table.path) if self.table.path else None,
                            "shapes": len(self.table.samples), "cached_at_start": self.table.loaded},
                  "floors": self.floor, "target": device.name, "quant": device.quant,
                  "threads": device.threads, "workers": getattr(self.pool, "workers", 1),
                  "options": dataclasses.asdict(self.options), "seconds": round(seconds, 1)}
        (self.out / "adapt.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        return result

    def _outlook(self) -> str:
        """Iterations left and the time they and the whole run should take, from the iterations so far."""
        done = [float(row["iteration_s"]) for row in self.trace.rows if row["iteration_s"]]
        left = self.budget.left(self.current_ms)
        elapsed = self.seconds_before + time.perf_counter() - self.started
        if not done:
            return f"~{left} iteration(s) left"
        search = left * sum(done) / len(done)
        total = elapsed + search + (self.options.confirm_secs if self.options.confirm_secs else 0)
        return (f"~{left} iteration(s) left, ~{search / 60:.1f} min; ~{total / 60:.1f} min in all before the "
                f"long fine-tune ({self.options.long_epochs} epochs)")

    def _long_options(self):
        from mnbench.accuracy.finetune import FinetuneOptions

        options = self.options
        return FinetuneOptions(epochs=options.long_epochs, batch_size=options.batch_size, flip=options.flip,
                               seed=options.seed)

    def _state(self) -> dict | None:
        """What --resume needs (None before the start's timing set the budget)."""
        if self.budget is None:
            return None
        return {"iteration": self.iteration, "start_ms": self.budget.start_ms,
                "budget_ms": self.budget.budget_ms, "step_ms": self.budget.step_ms,
                "current_ms": self.current_ms, "current_top1": self.current_top1,
                "start_config": self.start.as_dict(), "floors": self.floor,
                "options": dataclasses.asdict(self.options), "target": self.device.name,
                "quant": self.device.quant, "threads": self.device.threads,
                "lut_cache": str(self.table.path.parent) if self.table.path else None,
                "data": str(self.data_path) if self.data_path else None,
                "seconds": round(self.seconds_before + time.perf_counter() - self.started, 1)}

    def _restore(self, resume: dict) -> None:
        state = resume["state"]
        self.current, self.iteration = resume["config"], int(state["iteration"])
        self.current_ms, self.current_top1 = float(state["current_ms"]), float(state["current_top1"])
        self.budget = Budget(float(state["start_ms"]), float(state["budget_ms"]), float(state["step_ms"]))
        self.floor = {key: int(value) for key, value in state["floors"].items()}
        self.seconds_before = float(state.get("seconds", 0.0))
        self.trace = Trace(self.out / "trace.csv", keep=self.iteration)
        self.log(f"resuming after iteration {self.iteration}: {self.current_ms:.3f} ms measured, budget "
                 f"{self.budget.budget_ms:.3f} ms; {self._outlook()}")

    def _save(self, path: Path, note: str) -> None:
        """The last chosen model, its configuration and the run's state (weights written whole, then the
        sidecar)."""
        from mnbench.accuracy.weights_file import write_sidecar, write_weights

        write_weights(self.model, path)
        write_sidecar(path, self.current, self.data.class_names,
                      {"adapt": note, "data": self.data.source, STATE: self._state()})

    def _keep_after_failure(self, error: BaseException) -> None:
        """On Ctrl-C, or an error once a model has been chosen: write the last chosen model (the start model
        before any), say so; a failure to write it leaves the original error to be reported."""
        interrupted, iteration = isinstance(error, KeyboardInterrupt), self.iteration
        if not (interrupted or iteration):
            return
        what = "the starting model" if iteration == 0 else \
            f"the model chosen in iteration {iteration}, after its short fine-tune"
        how = "interrupted" if interrupted else "stopped by an error"
        with contextlib.suppress(Exception):
            self._save(self.adapted, f"{how} after {iteration} iterations: {what}, without the long "
                       "fine-tune")
            self.log(f"{how}: {self.adapted} holds the model of iteration {iteration}; trace in "
                     f"{self.out / 'trace.csv'}; continue with --resume {self.out}")
