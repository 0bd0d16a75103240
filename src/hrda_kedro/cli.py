"""Project CLI: Kedro's own ``kedro run``, with errors a user can act on.

Kedro loads ``<package>.cli`` and lets its ``cli`` group override built-in commands (see
https://docs.kedro.org/en/stable/extend/common_use_cases/). ``run`` here takes every option
of Kedro's ``run`` and calls it, so it behaves the same, except:

- a bad parameter, data file or checkpoint, or a launch that would duplicate the run
  (:class:`ParameterError`, :class:`DataError`, :class:`CheckpointError`,
  :class:`LauncherError`, also under Kedro's ``DatasetError``) prints its one-line message
  and what to do, not a framed traceback of 100+ lines; the traceback goes to the log
  file (``info.log``), or to the console with ``--verbose``;
- an unknown ``--pipeline``/``--pipelines`` name lists the pipelines that exist;
- ``--load-versions`` is refused as a bad option when malformed (Kedro 1.7 printed
  ``NoneType: None``) or when it names a dataset the run does not use (Kedro ignored it and
  loaded the newest version);
- an unknown node name (``--nodes``, ``--from-nodes``, ``--to-nodes``) or runner, and
  filters that leave nothing to run, are usage errors naming the option, not tracebacks.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import KedroCliError
from kedro.framework.project import settings
from kedro.io.core import DatasetError
from kedro.utils import find_kedro_project

logger = logging.getLogger(__name__)


def _advice() -> dict[type[Exception], str]:
    """Our error types and what to do about each.

    Imported here, not at module level: Kedro imports this module for every ``kedro``
    command (``--version``, ``--help``, ``info``), and the modules defining these errors
    load torch and the whole model stack (seconds). An error of one of these types can only
    have been raised once its module was loaded, so the import costs nothing by then.
    """
    from yaml import MarkedYAMLError

    from hrda_kedro.data import DataError, MissingFolderError, MissingInputError
    from hrda_kedro.hrda.checkpoint import CheckpointError
    from hrda_kedro.hrda.networks.weights import WeightsError
    from hrda_kedro.hrda.training.history import NonFiniteLossError
    from hrda_kedro.launch import LauncherError
    from hrda_kedro.params import ParameterError
    from hrda_kedro.run_lock import ProjectBusyError

    return {  # the first type an error is an instance of gives the advice
        MissingInputError: "run the pipeline that makes it first (kedro run --pipeline=uda "
        "makes every dataset), or name a saved version with --load-versions=<dataset>:"
        "<timestamp>; predict also takes --params predict.checkpoint=<path>",
        MissingFolderError: "put the data there, or point the setting that names this folder "
        "at the one that holds it (the paper's data sets: conf/<env>/parameters_ingestion.yml, "
        "README 'The paper's data sets'; your images: predict.input_dir)",
        ParameterError: "fix this key in conf/<env>/parameters*.yml (conf/base, conf/local) "
        "or in --params, then run again",
        DataError: "fix, replace or remove this file or folder, or the setting the message "
        "names (a data set's image_dir, label_dir, suffixes or class_map in "
        "ingestion_datasets); ingestion.skip_bad_files or predict.skip_bad_files: true "
        "leaves single bad files out; then run again",
        CheckpointError: "use a checkpoint written by hrda-kedro for this configuration (or "
        "move this one away to train afresh; predict: point predict.checkpoint at a "
        "checkpoint file, a versioned checkpoint folder or an export folder), then run again",
        WeightsError: "point model.network.pretrained (or self_training.feature_distance."
        "pretrained) at ImageNet weights of the configured encoder, or set it to null, then "
        "run again",
        ProjectBusyError: "wait for that run to end, or stop it; predict and the exports may "
        "run beside it, and two experiments at once need two copies of the project (each its "
        "own data/)",
        LauncherError: "start or restart `kedro run` on every machine as the README shows "
        "('Several GPUs, several machines')",
        NonFiniteLossError: "lower the stage's optimizer.lr or set its optimizer.grad_clip "
        "(warmup or self_training in conf/<env>/parameters*.yml or --params), then run "
        "again: it resumes from the last checkpoint",
        # Kedro's ParserError of a configuration file (yaml's, which it re-raises).
        MarkedYAMLError: "fix the YAML syntax of that file (an unclosed bracket or quote, a "
        "tab in the indentation; Kedro counts the lines from 0), then run again",
    }


class ShortError(click.ClickException):
    """``Type: message`` of the error as raised, then what to do; exit status 1."""

    def __init__(self, shown: Exception, cause: Exception, where_traceback: str) -> None:
        super().__init__(str(shown))
        self.shown, self.cause, self.where_traceback = shown, cause, where_traceback

    def show(self, file: IO[Any] | None = None) -> None:
        advice = next(v for k, v in _advice().items() if isinstance(self.cause, k))
        click.echo(_headline(self.shown, self.cause), file=file, err=True)
        click.echo(f"What to do: {advice}. {self.where_traceback}", file=file, err=True)


def _headline(shown: Exception, cause: Exception) -> str:
    """``Type: message``; an error of ours under Kedro's ``DatasetError`` is shown after the
    dataset's name alone: Kedro's own text around it repeats the dataset's repr."""
    name, sep, kedro_text = str(shown).partition(": ")
    if shown is not cause and sep and kedro_text.startswith("Failed while") and " " not in name:
        return f"{type(cause).__name__}: {name}: {cause}"
    return f"{type(shown).__name__}: {shown}"


def user_error_headline(error: BaseException) -> str | None:
    """``Type: message`` of a user's mistake (one of our own errors, also under Kedro's
    ``DatasetError``), or None for any other error: for the scripts beside the project
    (``benchmarks/``), which end on it with one line as ``kedro run`` does."""
    cause = _our_cause(error)
    return None if cause is None else _headline(error, cause)


def _our_cause(error: BaseException | None) -> Exception | None:
    """Our own error: ``error`` itself, or its cause under Kedro's ``DatasetError``."""
    known = tuple(_advice())
    while error is not None:
        if isinstance(error, known):
            return error
        if not isinstance(error, DatasetError):
            return None
        error = error.__cause__
    return None


def _to_log_file(error: BaseException) -> str:
    """Write the traceback to the log file handlers only (not the console); say where."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (text,), None)
    for handler in files:
        handler.handle(record)
    if not files:
        return "Run with --verbose for the full traceback."
    return f"Full traceback: {' and '.join(h.baseFilename for h in files)} (or run with --verbose)."


def _check_pipeline_names(names: list[str]) -> None:
    """Kedro's own message suggests close names only; list every pipeline instead."""
    from kedro.framework.project import pipelines

    for name in names:
        if name not in pipelines.keys():  # noqa: SIM118 - a lazy mapping
            known = sorted(n for n in pipelines.keys() if n != "__default__")
            raise click.UsageError(
                f"no pipeline named {name!r}; the pipelines are: {', '.join(known)} (default: uda)"
            )


def _refuse_unknown(kind: str, value: str, known: set[str], names: list[str], option: str) -> None:
    """A bad option naming ``value``, with the closest names of ``known`` in the run's
    pipelines: Kedro ignores the one (``--load-versions``) and gives a framed traceback
    listing nothing for the other (``--nodes``)."""
    import difflib

    close = difflib.get_close_matches(value, sorted(known), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise click.BadParameter(
        f"no {kind} named {value!r} in the pipeline{'s' * (len(names) > 1)} "
        f"{', '.join(names) or 'uda'}{hint}",
        param_hint=f"'{option}'",
    )


def _check_load_versions(versions: dict[str, str], names: list[str]) -> None:
    """A typo in a ``--load-versions`` dataset (``round1.model``) silently loaded the newest
    version of the dataset meant."""
    from kedro.framework.project import pipelines

    used = set().union(*(pipelines[n].datasets() for n in names or ["__default__"]))
    for dataset in versions:
        if dataset not in used:
            _refuse_unknown("dataset", dataset, used, names, "--load-versions")


def _check_node_names(options: dict[str, Any], names: list[str]) -> None:
    """``--nodes``, ``--from-nodes`` and ``--to-nodes`` name nodes of the run's pipelines."""
    from kedro.framework.project import pipelines

    known = {n.name for name in names or ["__default__"] for n in pipelines[name].nodes}
    for option in ("node_names", "from_nodes", "to_nodes"):
        for node in options.get(option) or ():
            if node not in known:
                flag = "--" + option.replace("node_names", "nodes").replace("_", "-")
                _refuse_unknown("node", node, known, names, flag)


def _check_runner(runner: str | None) -> None:
    """Kedro's error for an unknown runner is a framed ``AttributeError``."""
    from kedro.utils import load_obj

    try:
        load_obj(runner or "SequentialRunner", "kedro.runner")
    except (AttributeError, ImportError, ValueError) as err:
        raise click.BadParameter(
            f"no runner named {runner!r} ({err}); expected SequentialRunner, ThreadRunner, "
            "ParallelRunner, hrda_kedro.runner.ParallelRunner (spawned workers with the "
            "project's hooks) or the import path of a runner class",
            param_hint="'--runner'",
        ) from err


class _Stopped(SystemExit):
    """A run ended by a signal, with the status a shell gives it (128 + the signal)."""


def _stop_on_signal(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler's time limit, ``kill``) or Ctrl-C ends the run as an exception
    would: staging folders and temporary files are removed, finished outputs are kept."""
    # One stop: another SIGTERM (a scheduler signals every process of the job, and this
    # process its workers) must not cut the clean-up short; a second Ctrl-C still may.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if multiprocessing.parent_process() is None:  # said once, not by each forked worker
        how = " (Ctrl-C)" if signum == signal.SIGINT else ""
        logger.warning("Stopped by signal %d%s; cleaning up", signum, how)
    _stop_workers()
    raise _Stopped(128 + signum)


def _stop_workers() -> None:
    """SIGTERM to this process's workers (``ParallelRunner``'s pool, data-parallel ranks).

    Signalled alone (``timeout``, ``docker stop``, ``kill <pid>``), the run waited for a
    worker's training node to finish, which then saved its model after the stop. Forked
    workers stop as this process does. Not the manager process of ``ParallelRunner``'s
    shared catalog: the clean-up still talks to it.
    """
    for child in multiprocessing.active_children():
        if not child.name.startswith("SyncManager"):
            child.terminate()


def _record_tracking_as_killed() -> None:
    """End the MLflow runs of a stopped run as KILLED: MLflow's exit handler would end them
    FINISHED, like a run that completed. Without mlflow imported no run is open."""
    if "mlflow" in sys.modules:
        from hrda_kedro import tracking_runs

        tracking_runs.end_active_runs("KILLED")


def check_env(env: str | None, conf_source: str | None) -> None:
    """Kedro's own error for an environment without a folder is a 150-line traceback; list
    the environments instead (also for the scripts in ``benchmarks/``). They are looked up in ``--conf-source`` when it is a folder,
    else in the project's (found from a subfolder too, as Kedro finds it)."""
    env = env or os.environ.get("KEDRO_ENV")
    if conf_source:
        conf = Path(conf_source).expanduser()
    else:
        root = find_kedro_project(Path.cwd()) or Path.cwd()
        conf = Path(root) / settings.CONF_SOURCE
    if not env or not conf.is_dir() or (conf / env).is_dir():
        return
    known = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name != "base")
    raise click.UsageError(
        f"no environment named {env!r} (no folder {conf / env}); the environments are: "
        f"{', '.join(known)}"
    )


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """While a run goes, SIGTERM and Ctrl-C stop it (:func:`_stop_on_signal`; a background
    job's ignored SIGINT stays ignored), with the shell's status for the signal: for Ctrl-C
    click printed "Aborted!" and exited 1, a failure like any other to a script."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _stop_on_signal)
    if previous[signal.SIGINT] is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop_on_signal)
    try:
        yield
    except _Stopped:
        _record_tracking_as_killed()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(verbose: bool, **options: Any) -> Any:
    with _stopped_by_signals():
        check_env(options.get("env"), options.get("conf_source"))
        names = [options["pipeline"]] if options.get("pipeline") else list(options["pipelines"])
        try:
            # The name checks read the registry, which reads the run's parameters: a
            # configuration file's error surfaces here first.
            _check_pipeline_names(names)
            _check_load_versions(options.get("load_versions") or {}, names)
            _check_node_names(options, names)
            _check_runner(options.get("runner"))
            return kedro_run.callback(**options)
        except Exception as exc:
            # Kedro has no exception type of its own for this; its text is all there is.
            if type(exc) is ValueError and str(exc).startswith("Pipeline contains no nodes after"):
                raise click.UsageError(
                    f"nothing to run: the pipeline{'s' * (len(names) > 1)} "
                    f"{', '.join(names) or 'uda'} hold{'s' * (len(names) < 2)} no node that "
                    "the filters given (--nodes, --tags, --namespaces, --from-*, --to-*) "
                    "select, or none at all (self_training with self_training.rounds: 0)"
                ) from exc
            cause = _our_cause(exc)
            if cause is None or verbose:
                raise
            raise ShortError(exc, cause, _to_log_file(exc)) from exc


@click.group(name="hrda_kedro")
def cli() -> None:
    """Project commands of hrda-kedro."""


def _with_own_load_versions(param: click.Parameter) -> click.Parameter:
    """Kedro's ``--load-versions`` option, whose parsing error Kedro 1.7 prints as
    ``NoneType: None`` (its ``KedroCliError.show`` reads the exception outside an
    ``except``): the same parsing, its error shown as a bad option."""
    if param.name != "load_versions" or param.callback is None:
        return param
    kedro_parse = param.callback

    def parse(ctx: click.Context, option: click.Parameter, value: str) -> Any:
        try:
            return kedro_parse(ctx, option, value)
        except KedroCliError as err:
            raise click.BadParameter(str(err).replace("',found", "', found"), ctx, option) from err

    own = copy.copy(param)
    own.callback = parse
    return own


# Module level: ``python -m hrda_kedro`` (Kedro's find_run_command) takes ``cli.run``.
run = click.Command(
    name="run",
    params=[
        *(_with_own_load_versions(p) for p in kedro_run.params),
        click.Option(
            ["--verbose", "-v"], is_flag=True, help="Show the full traceback of any error."
        ),
    ],
    callback=_run,
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
cli.add_command(run)
