"""The ``visrec`` command: the project's pipelines from anywhere inside it, prediction into
a file of your choice, and a web page to try the model.

    visrec run [KEDRO RUN OPTIONS]           kedro run (python -m visrec is the same)
    visrec predict FOLDER --out FILE         classify images with the served model
    visrec serve                             a page on http://127.0.0.1:8000 to try it
    visrec params [--out FILE] [--sync]      the parameters a run uses; params.yaml's list

The project is found upward from the working directory (the first folder whose
``pyproject.toml`` declares ``[tool.kedro] package_name = "visrec"``), or given with
``--project``; paths on the command line are taken relative to the working directory.
(The module is not ``cli.py``: Kedro loads ``<package>.cli`` as commands of its own.)
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

import click

PACKAGE = "visrec"
SERVED = Path("data/06_models/served")
PREDICTIONS = Path("data/07_model_output/predictions.csv")
FAILURES = Path("data/07_model_output/prediction_failures.csv")


def find_project(start: Path) -> Path:
    """The visrec project holding ``start``: it, or the nearest folder above it, whose
    ``pyproject.toml`` has ``[tool.kedro] package_name = "visrec"``.

    Raises:
        click.UsageError: If there is none.
    """
    for folder in (start, *start.parents):
        manifest = folder / "pyproject.toml"
        if manifest.is_file():
            try:
                kedro = tomllib.loads(manifest.read_text(encoding="utf-8")).get("tool", {})
            except (OSError, tomllib.TOMLDecodeError):
                continue
            if kedro.get("kedro", {}).get("package_name") == PACKAGE:
                return folder
    raise click.UsageError(f"no visrec project in {start} or above it: run the command "
                           "inside the project, or give --project DIR")


def _project(project: Path | None) -> Path:
    """The project root: of ``--project`` (or a folder inside it), else of the working
    directory."""
    return find_project((Path.cwd() if project is None else project).resolve())


def _served_project(project: Path | None) -> Path:
    """The project root, which must hold a served model."""
    root = _project(project)
    if not (root / SERVED / "model.safetensors").is_file():
        raise click.UsageError(f"no served model in {root / SERVED}: train one first "
                               "(visrec run --pipelines=train)")
    return root


project_option = click.option(
    "--project", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The visrec project (default: found upward from the working directory).")
env_option = click.option("--env", default=None,
                          help="Kedro environment (conf/<env>), as kedro run --env.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """visrec: image classification and metric learning on Kedro, PyTorch and timm."""


@main.command(context_settings={"ignore_unknown_options": True,
                                "allow_extra_args": True})
@project_option
@click.pass_context
def run(context: click.Context, project: Path | None) -> None:
    """kedro run in the project; every option of kedro run is passed on."""
    root = _project(project)
    os.chdir(root)  # Kedro's catalog paths are relative to the project root
    from kedro.framework.cli.utils import find_run_command  # noqa: PLC0415
    from kedro.framework.project import configure_project  # noqa: PLC0415

    configure_project(PACKAGE)
    find_run_command(PACKAGE)(args=context.args, standalone_mode=True)


def _session_run(root: Path, env: str | None, pipeline: str,
                 runtime_params: dict | None = None) -> None:
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    bootstrap_project(root)
    session = KedroSession.create(project_path=root, env=env, runtime_params=runtime_params)
    with session:
        session.run(pipeline_names=[pipeline])


def _replace_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """``target`` made by ``write`` into a file beside it (with the usual permissions) and
    one rename; a failed write leaves ``target`` as it was and no temporary file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _copy_atomically(source: Path, target: Path) -> None:
    _replace_atomically(target, lambda temporary: shutil.copyfile(source, temporary))


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the predictions (CSV: path, label_1, probability_1, ...).")
@click.option("--failures", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the files that could not be read (default: beside "
                   "--out, <name>_failures.csv, when there are any).")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Labels per image (default: predict.top_k).")
@project_option
@env_option
def predict(inputs: tuple[Path, ...], out: Path, failures: Path | None, top_k: int | None,
            project: Path | None, env: str | None) -> None:
    """Classify INPUTS (folders, image files, or .txt lists of paths) with the served
    model; write the top classes and calibrated probabilities to --out."""
    if out.suffix.lower() != ".csv":
        raise click.BadParameter(f"{out}: give a .csv file", param_hint="--out")
    absolute = [str(path.resolve()) for path in inputs]
    out, failures = out.resolve(), None if failures is None else failures.resolve()
    root = _served_project(project)
    os.chdir(root)
    params: dict = {"input": absolute[0] if len(absolute) == 1 else absolute}
    if top_k is not None:
        params["top_k"] = top_k
    _session_run(root, env, "predict", {"predict": params})
    _copy_atomically(root / PREDICTIONS, out)
    import pandas as pd  # noqa: PLC0415

    failed = pd.read_csv(root / FAILURES, dtype=str, keep_default_na=False)
    predicted = len(pd.read_csv(root / PREDICTIONS, dtype=str, keep_default_na=False))
    message = f"visrec predict: {predicted} images classified into {out}"
    if len(failed):
        failures = failures or out.with_name(f"{out.stem}_failures.csv")
        _copy_atomically(root / FAILURES, failures)
        message += f"; {len(failed)} files could not be read (reasons in {failures})"
    click.echo(message)


@main.command()
@project_option
@env_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 makes the page reachable from other "
                   "machines: only on a trusted network).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(min=0.001), default=20.0,
              show_default=True, help="Largest image file taken.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Classes shown per image.")
def serve(project: Path | None, env: str | None, host: str, port: int, max_upload_mb: float,
          top_k: int) -> None:
    """A web page to try the served model: drop images, see the top classes with their
    calibrated probabilities."""
    root = _served_project(project)
    import uvicorn  # noqa: PLC0415

    from visrec.core.models import (  # noqa: PLC0415
        model_from_weight_set,
        read_weight_set,
        select_device,
    )
    from visrec.core.serve.app import UploadLimits, make_app  # noqa: PLC0415
    from visrec.core.serve.predict import Predictor  # noqa: PLC0415

    settings = _predict_params(root, env)
    served = read_weight_set(root / SERVED)
    device = select_device(settings["device"], key="predict.device")
    predictor = Predictor(model_from_weight_set(served).to(device), served.config)
    limits = UploadLimits(max_bytes=int(max_upload_mb * 2**20),
                          max_pixels=int(settings["max_pixels"]))
    click.echo(f"visrec serve: {served.config.architecture} ({len(served.config.classes)} "
               f"classes) from {root / SERVED} on http://{host}:{port}/", err=True)
    uvicorn.run(make_app(predictor, limits, top_k), host=host, port=port, log_level="warning")


@main.command()
@project_option
@env_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write them to this YAML file (default: print them).")
@click.option("--data-roots", "data_roots", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the image folder ingestion reads to this YAML "
                                 "file (data_roots.images), for dvc.yaml's vars.")
@click.option("--sync", is_flag=True,
              help="Instead, list every parameter of conf/base in params.yaml (null: as "
                   "conf/ says), keeping the values set there.")
def params(project: Path | None, env: str | None, out: Path | None, data_roots: Path | None,
           sync: bool) -> None:
    """The parameters a run uses (conf/base, conf/<env>, then params.yaml), checked.

    DVC's first stage writes them to data/05_model_input/parameters.yml, which the other
    stages track and `dvc exp show` reports."""
    out, data_roots = (None if path is None else path.resolve() for path in (out, data_roots))
    root, env = _project(project), env or os.environ.get("KEDRO_ENV")
    from visrec.config import PARAMS_FILE, ParamsFileError  # noqa: PLC0415

    try:
        if sync:
            _sync_params_file(root / PARAMS_FILE)
            return
        parameters = _run_parameters(root, env)
    except ParamsFileError as error:
        raise click.ClickException(str(error)) from None
    text = _parameters_yaml(parameters, env)
    if out is None:
        click.echo(text, nl=False)
    else:
        _write_text(out, text)
    if data_roots is not None:
        import yaml  # noqa: PLC0415

        _write_text(data_roots, DATA_ROOTS_HEADER + yaml.safe_dump(
            {"data_roots": {"images": parameters["ingestion"]["root"]}}, sort_keys=False))


DATA_ROOTS_HEADER = ("# The image folder a run reads (ingestion.root, whichever layer set "
                     "it), written by\n# `visrec params --data-roots`: dvc.yaml makes it a "
                     "dependency of ingestion.\n")


def _write_text(target: Path, text: str) -> None:
    _replace_atomically(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _run_parameters(root: Path, env: str | None) -> dict:
    """Every parameter a run in ``root`` with ``env`` uses, after the run's checks.

    Raises:
        click.ClickException: If a parameter is invalid.
    """
    from kedro.framework.project import settings  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    from visrec.config import in_order  # noqa: PLC0415
    from visrec.params.base import ParameterError  # noqa: PLC0415
    from visrec.params.project import check_parameters  # noqa: PLC0415

    bootstrap_project(root)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(root / settings.CONF_SOURCE), env=env, **settings.CONFIG_LOADER_ARGS)
    parameters = loader["parameters"]
    try:
        check_parameters(parameters)
    except ParameterError as error:
        raise click.ClickException(str(error)) from None
    return in_order(parameters, _parameter_order())


def _parameters_yaml(parameters: dict, env: str | None) -> str:
    import yaml  # noqa: PLC0415
    from kedro.framework.project import settings  # noqa: PLC0415

    used = env or settings.CONFIG_LOADER_ARGS.get("default_run_env", "local")
    return (f"# The parameters of a run with the Kedro environment {used!r}: conf/base, "
            f"conf/{used}, then params.yaml.\n# Written by `visrec params`: DVC's stages "
            "track these values, and `dvc exp show` reports them.\n"
            + yaml.safe_dump(parameters, sort_keys=False, default_flow_style=False))


def _parameter_order() -> list[str]:
    """The top-level parameters in pipeline order: ``seed``, then the blocks."""
    from visrec.params import BLOCKS  # noqa: PLC0415 - the blocks import torch

    return ["seed", *BLOCKS]


def _sync_params_file(path: Path) -> None:
    """List every parameter of conf/base in ``path`` (params.yaml), keeping what it sets."""
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    from visrec.config import overrides, read_params_file, synced_params_file  # noqa: PLC0415
    from visrec.settings import CONFIG_LOADER_ARGS  # noqa: PLC0415

    base = OmegaConfigLoader(str(path.parent / "conf"),
                             **(CONFIG_LOADER_ARGS | {"default_run_env": "base"}))
    content = read_params_file(path)
    text = synced_params_file(content, base["parameters"], _parameter_order())
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        click.echo(f"{path}: up to date")
        return
    _write_text(path, text)
    click.echo(f"{path}: every parameter of conf/base listed; "
               f"{len(overrides(content))} set (applied over conf/)")


def _predict_params(root: Path, env: str | None) -> dict:
    """The ``predict`` block of the project's configuration (``device``, ``max_pixels``):
    the page refuses what prediction refuses, on the device prediction uses."""
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    bootstrap_project(root)
    session = KedroSession.create(project_path=root, env=env)
    with session:
        return dict(session.load_context().params["predict"])


if __name__ == "__main__":
    sys.exit(main())
