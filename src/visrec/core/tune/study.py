"""The search itself: an Optuna study in a database, trials within a budget, pruning on
evidence, and a resumable, shareable run.

The study lives in an Optuna RDB storage (SQLite under ``data/`` by default, or any
SQLAlchemy URL: PostgreSQL, MySQL), so a killed search resumes where it stopped, and
several processes or machines that open the same study share its trials. A heartbeat marks
the trials of a process that died; the next trial to start fails them and queues their
settings again (Optuna's ``RetryHeartbeatStaleTrialCallback``). Finished trials are
never run again.

The first trial tries the settings as configured. Its per-epoch scores set where the
pruner may first cut: the first epoch at which it is above chance by the noise; before
that epoch, or when it never gets there, nothing is cut.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from filelock import FileLock
from optuna.pruners import BasePruner, HyperbandPruner, NopPruner, SuccessiveHalvingPruner
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url

from visrec.core.progress import progress
from visrec.core.tune.evidence import Candidate, EvidencePruner, Noise, choose
from visrec.core.tune.plan import SearchPlan
from visrec.core.tune.space import SearchSpace

logger = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random")
PRUNERS = ("successive_halving", "hyperband", "none")
HEARTBEAT_SECONDS = 10  # a running trial writes a heartbeat this often
GRACE_SECONDS = 30  # a trial silent this long belongs to a dead process
RETRIES = 2  # times the settings of a dead process's trial are queued again
CONFIGURED = "configured"  # user attribute of the trial of the settings as configured
POLICY_COST = "augmentation_us:"  # study attribute prefix: a policy's time per image
# A failed trial (a diverged recipe, a dead process) spent what it ran; its retry counts
# again: the search errs on the side of the budget.
SPENT_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


class StudyMismatch(ValueError):
    """The named study was started for other data or another search space."""


class Report(Protocol):
    """What a trainer calls after each epoch: may raise ``optuna.TrialPruned``."""

    def __call__(self, epoch: int, value: float, cost: float) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """A finished proxy training.

    Attributes:
        value: Its score: the best of its weight sets on the validation split.
        cost_key: Training images per epoch, then augmentation time per image (us).
        details: More to keep with the trial (the weight set scored, seconds, ...).
    """

    value: float
    cost_key: tuple[float, ...]
    details: Mapping[str, Any] = field(default_factory=dict)


Trainer = Callable[[dict[str, Any], Report], Outcome]


@contextmanager
def experimental_ok() -> Iterator[None]:
    """Optuna's APIs marked "experimental" (the heartbeat since 2.9, fANOVA), used
    knowingly: their warning is silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def make_storage(url: str, heartbeat: int = HEARTBEAT_SECONDS,
                 grace: int = GRACE_SECONDS) -> RDBStorage:
    """An Optuna RDB storage with the heartbeat on (every ``heartbeat`` seconds; a trial
    silent for ``grace`` seconds is failed and queued again); SQLite waits for its lock."""
    sqlite = url.startswith("sqlite")
    # SQLite: no transaction handling of Python's sqlite3 module (see _write_locked).
    engine: dict[str, Any] = ({"connect_args": {"timeout": 120, "isolation_level": None}}
                              if sqlite else {"pool_pre_ping": True})
    with experimental_ok():
        storage = RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                             grace_period=grace,
                             heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                 max_retry=RETRIES))
    if sqlite:
        event.listen(storage.engine, "begin", _write_locked)
    return storage


def _write_locked(connection: Connection) -> None:
    """Begin each SQLite transaction with the write lock (``BEGIN IMMEDIATE``).

    Python's sqlite3 module begins a transaction only at the first write, and SQLite
    ignores the ``SELECT ... FOR UPDATE`` with which Optuna claims a queued trial: two
    processes could both read the trial as waiting and both run it (seen: the configured
    trial run by both processes of the shared-study test). With the lock taken at the
    start, the read and the write of a claim are one step. SQLAlchemy's recipe for
    pysqlite's transactions; the connections are made without sqlite3's own handling.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sampler(name: str, seed: int) -> BaseSampler:
    """The sampler by name, seeded."""
    if name == "random":
        return RandomSampler(seed=seed)
    if name == "tpe":
        return TPESampler(seed=seed)
    raise ValueError(f"sampler {name!r}: use one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, first_cut: int | None, max_epochs: int, reduction_factor: int,
                noise: Noise) -> BasePruner:
    """The pruner by name, cutting from epoch ``first_cut`` (None: never)."""
    if name not in PRUNERS:
        raise ValueError(f"pruner {name!r}: use one of {', '.join(PRUNERS)}")
    if name == "none" or first_cut is None or first_cut >= max_epochs:
        return NopPruner()
    inner: BasePruner = (
        SuccessiveHalvingPruner(min_resource=first_cut, reduction_factor=reduction_factor)
        if name == "successive_halving" else
        HyperbandPruner(min_resource=first_cut, max_resource=max_epochs,
                        reduction_factor=reduction_factor))
    return EvidencePruner(inner, noise, reduction_factor)


def open_study(url: str, name: str, fingerprint: str, sampler: BaseSampler,
               first: Mapping[str, Any] | None = None, heartbeat: int = HEARTBEAT_SECONDS,
               grace: int = GRACE_SECONDS) -> optuna.Study:
    """Create the study, or load it when it exists (see :func:`make_storage`).

    The process that creates the study (the database's unique study name decides, when
    several start together) queues ``first`` as its first trial, marked
    :data:`CONFIGURED`: the settings as configured run once, whoever runs them. Processes
    that open one SQLite file together take turns (a file lock beside it) while the
    tables and the study are made: SQLite cannot create the same tables twice at once.

    Raises:
        StudyMismatch: If a study of that name was started with another fingerprint.
    """
    path = make_url(url).database if url.startswith("sqlite") else None
    turn = FileLock(f"{path}.lock") if path and path != ":memory:" else nullcontext()
    with turn:  # SQLite: the study is made, stamped and seeded before another process looks
        storage = make_storage(url, heartbeat, grace)
        try:
            study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                        pruner=NopPruner(), direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(storage=storage, study_name=name, sampler=sampler,
                                      pruner=NopPruner())
        stored = study.user_attrs.get("fingerprint")
        if stored is None:  # made here, or beforehand (optuna create-study)
            study.set_user_attr("fingerprint", fingerprint)
        elif stored != fingerprint:
            raise StudyMismatch(
                f"tuning.study_name = {name!r}: that study in {safe_url(url)} was started "
                "for other data, another space or other settings; give another "
                "tuning.study_name (or null: one name per settings), or delete it: optuna "
                f"delete-study --storage URL --study-name {name}")
        if first is not None and not study.get_trials(deepcopy=False):
            # Another server's process may be here at the same moment (no file lock
            # there): the same settings are queued once.
            study.enqueue_trial(dict(first), user_attrs={CONFIGURED: True},
                                skip_if_exists=True)
    return study


def policy_cost(study: optuna.Study, policy: str, measure: Callable[[], float]) -> float:
    """``policy``'s augmentation time per image (us) as the study keeps it: measured by the
    first process that needs it, so that every process sharing the study breaks ties on
    the same figures (a timing differs from run to run and from machine to machine)."""
    key = f"{POLICY_COST}{policy}"
    if key not in study.user_attrs:
        study.set_user_attr(key, measure())
    return float(study.user_attrs[key])


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def spent(study: optuna.Study) -> float:
    """Image-steps the study's trials have used (finished, cut, failed and running ones)."""
    return sum(float(t.user_attrs.get("cost", 0.0))
               for t in study.get_trials(deepcopy=False, states=SPENT_STATES))


def first_cut(study: optuna.Study, noise: Noise) -> int | None:
    """The first epoch at which the configured settings' trial scored above chance by the
    noise, or None (not yet known, or never)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get(CONFIGURED):
            steps = sorted(trial.intermediate_values)
            return next((step for step in steps
                         if noise.above_chance(trial.intermediate_values[step])), None)
    return None


def candidates(study: optuna.Study) -> list[Candidate]:
    """Every finished trial, as :func:`visrec.core.tune.evidence.choose` sees it."""
    return [Candidate(number=t.number, value=float(t.value),
                      cost=tuple(t.user_attrs.get("cost_key", ())),
                      configured=bool(t.user_attrs.get(CONFIGURED, False)))
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None]


@dataclass
class Search:
    """One process's part of a search.

    Attributes:
        study: The opened study.
        plan: The budget and proxy sizes.
        space: What the trials choose.
        noise: The noise of a validation score.
        trainer: Trains one proxy for the settings it is given.
        pruner: ``tuning.pruner.name``.
        reduction_factor: Keep ``1 / reduction_factor`` at each rung.
    """

    study: optuna.Study
    plan: SearchPlan
    space: SearchSpace
    noise: Noise
    trainer: Trainer
    pruner: str = "successive_halving"
    reduction_factor: int = 3
    catch: tuple[type[Exception], ...] = (FloatingPointError,)
    _bar: Any = field(default=None, init=False, repr=False)

    def fits(self) -> bool:
        """Whether the costliest setting can still run a proxy within the budget."""
        return spent(self.study) + self.plan.max_trial_cost <= self.plan.budget_cost

    def run(self) -> None:
        """Run trials until the budget would be overrun (no trial starts then)."""
        # A trial of a process that died is failed (and queued again) now, not only when
        # the next trial starts: a run that finds the budget spent reports it failed.
        with experimental_ok():
            optuna.storages.fail_stale_trials(self.study)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials are logged here
        try:
            self._run()
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _run(self) -> None:
        self._set_pruner()
        trials = len(self.study.get_trials(deepcopy=False))
        if not self.fits():
            logger.info("tuning: the budget is spent (%d trials, %.2f trainings); nothing "
                        "to run", trials, spent(self.study) / self.plan.training_cost)
            return
        start = time.monotonic()
        with progress(total=round(self.plan.budget_cost), initial=round(spent(self.study)),
                      unit="img", unit_scale=True, desc="tuning", leave=True) as self._bar:
            self.study.optimize(self._objective, callbacks=[self._after_trial],
                                catch=self.catch)
        logger.info("tuning: %d trials in the study, %.2f trainings spent, %.0f s here",
                    len(self.study.get_trials(deepcopy=False)),
                    spent(self.study) / self.plan.training_cost, time.monotonic() - start)

    def _set_pruner(self) -> None:
        cut = first_cut(self.study, self.noise)
        self.study.pruner = make_pruner(self.pruner, cut, self.plan.proxy_epochs,
                                        self.reduction_factor, self.noise)

    def _objective(self, trial: Trial) -> float:
        settings = self.space.suggest(trial)
        # A retry of a dead process's trial inherits its attributes: it has spent nothing.
        trial.set_user_attr("cost", 0.0)
        spent_before = 0.0

        def report(epoch: int, value: float, cost: float) -> None:
            nonlocal spent_before
            trial.set_user_attr("cost", cost)
            if self._bar is not None:
                self._bar.update(round(cost - spent_before))
            spent_before = cost
            trial.report(value, epoch)
            if trial.should_prune():
                logger.info("tuning: trial %d cut after epoch %d (%.3f +- %.3f)", trial.number,
                            epoch, value, self.noise.standard_error(value))
                raise optuna.TrialPruned()

        outcome = self.trainer(settings, report)
        trial.set_user_attr("cost_key", list(outcome.cost_key))
        trial.set_user_attr("standard_error", self.noise.standard_error(outcome.value))
        for key, value in outcome.details.items():
            trial.set_user_attr(key, value)
        return outcome.value

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if isinstance(study.pruner, NopPruner):  # the configured trial may have ended
            self._set_pruner()  # (here or in another process sharing the study)
        best = self.best()
        if self._bar is not None:
            done = len(study.get_trials(deepcopy=False))
            self._bar.set_postfix_str(
                f"{done} trials, best #{best.number} {best.value:.3f} +- "
                f"{self.noise.standard_error(best.value):.3f}" if best else f"{done} trials")
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            logger.info("tuning: trial %d scored %.3f +- %.3f (%s)", trial.number, trial.value,
                        self.noise.standard_error(trial.value), trial.params)
        if not self.fits():
            study.stop()

    def best(self) -> Candidate | None:
        """The winner so far (:func:`visrec.core.tune.evidence.choose`), or None."""
        found = candidates(self.study)
        return choose(found, self.noise) if found else None

