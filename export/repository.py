"""The Triton repository writer: config.pbtxt from the spec, version folders written atomically.

A version folder is assembled in a hidden staging folder beside the others (Triton ignores
folders whose name is not a number), validated, then renamed into place in one step, so the
server never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.contract.io_spec import ModelSpec, TensorSpec
from export.contract.metas import META_FILE
from export.contract.specs import MODEL_META

CONFIG_FILE = "config.pbtxt"


class ConfigError(ValueError):
    """A config.pbtxt that Triton would refuse."""


def _tensor(msg: Any, tensor: TensorSpec) -> None:
    msg.name = tensor.name
    msg.data_type = mc.DataType.Value(tensor.triton_dtype)
    msg.dims.extend(tensor.dims)


def model_config(spec: ModelSpec) -> mc.ModelConfig:
    """The model's Triton config as a protobuf message (no text templating, so no typos)."""
    config = mc.ModelConfig(name=spec.name, max_batch_size=spec.max_batch_size)
    for tensor in spec.inputs:
        _tensor(config.input.add(), tensor)
    for tensor in spec.outputs:
        _tensor(config.output.add(), tensor)
    if spec.is_ensemble:
        config.platform = "ensemble"
        for step in spec.steps:
            msg = config.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
            msg.input_map.update(step.inputs)
            msg.output_map.update(step.outputs)
        return config  # the composing models batch; an ensemble has no weights or instances
    config.backend = spec.backend
    config.default_model_filename = spec.default_model_filename
    if spec.max_batch_size > 0:
        config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    config.version_policy.latest.num_versions = spec.num_versions
    for key, value in spec.parameters.items():
        config.parameters[key].string_value = value
    # instance_group is left to the deployment: GPU where present, CPU otherwise.
    return config


def config_text(spec: ModelSpec) -> str:
    header = (
        f"# Written by export/repository.py from export/contract/specs.py ({spec.name}); "
        "edit the spec.\n"
    )
    return header + text_format.MessageToString(model_config(spec))


def parse_config(text: str) -> mc.ModelConfig:
    """Parse a config.pbtxt as Triton would; raise ConfigError on anything it would refuse."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"invalid config.pbtxt: {exc}") from exc


def write_config(repository: Path, spec: ModelSpec) -> Path:
    path = repository / spec.name / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = config_text(spec)
    if parse_config(text) != model_config(spec):
        raise ConfigError(f"{path}: config does not survive a round trip through text_format")
    path.write_text(text)
    return path


META_MODEL_SOURCE = Path(__file__).parent / "triton_models" / "model_meta.py"


def write_meta_model(repository: Path) -> Path:
    """The ``model_meta`` model (every version's meta.json over gRPC) as version 1; its
    model.py is replaced in one rename when the source changed, else left alone."""
    write_config(repository, MODEL_META)
    target = repository / MODEL_META.name / "1" / MODEL_META.default_model_filename
    source = META_MODEL_SOURCE.read_bytes()
    if not target.exists() or target.read_bytes() != source:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{os.getpid()}")
        staging.write_bytes(source)
        os.replace(staging, target)
    return target


def write_ensemble(repository: Path, spec: ModelSpec) -> Path:
    """An ensemble's config and the empty version folder Triton requires of it."""
    if not spec.is_ensemble:
        raise ConfigError(f"{spec.name} is not an ensemble")
    write_config(repository, spec)
    folder = repository / spec.name / "1"
    folder.mkdir(exist_ok=True)
    return folder


def check_ensemble(spec: ModelSpec, members: dict[str, ModelSpec]) -> None:
    """Every step names a known model and its real tensor names; every tensor a step reads is an
    ensemble input or an earlier step's output; every tensor a step writes is read (Triton
    refuses unused ones); every ensemble output is produced."""
    available = set(spec.input_names)
    for step in spec.steps:
        if step.model not in members:
            raise ConfigError(f"{spec.name}: step model {step.model!r} has no spec")
        member = members[step.model]
        for names, declared, what in (
            (step.inputs, member.input_names, "input"),
            (step.outputs, member.output_names, "output"),
        ):
            unknown = set(names) - set(declared)
            if unknown:
                raise ConfigError(f"{spec.name}: {step.model} has no {what} {sorted(unknown)}")
        missing = set(member.input_names) - set(step.inputs)
        unfed = {v for v in step.inputs.values() if v not in available}
        if missing or unfed:
            raise ConfigError(
                f"{spec.name}: {step.model} inputs not fed: {sorted(missing | unfed)}"
            )
        available |= set(step.outputs.values())
    read = {v for step in spec.steps for v in step.inputs.values()} | set(spec.output_names)
    unused = {v for step in spec.steps for v in step.outputs.values()} - read
    if unused:
        raise ConfigError(f"{spec.name}: ensemble tensors {sorted(unused)} are never read")
    unproduced = set(spec.output_names) - available
    if unproduced:
        raise ConfigError(f"{spec.name}: outputs {sorted(unproduced)} are produced by no step")


def versions(repository: Path, model: str) -> list[int]:
    """Version numbers present in the repository for ``model``, ascending."""
    folder = repository / model
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


RETIRED = ".retired-"  # a version taken out of service: hidden from Triton, kept for the record


def retired_versions(repository: Path, model: str) -> list[int]:
    folder = repository / model
    if not folder.is_dir():
        return []
    return sorted(
        int(p.name[len(RETIRED) :].split("-")[0])
        for p in folder.iterdir()
        if p.is_dir() and p.name.startswith(RETIRED)
    )


def retire_version(repository: Path, model: str, version: int) -> Path:
    """Take a version out of the repository in one rename; its number is never used again."""
    folder = repository / model
    target = folder / f"{RETIRED}{version}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{RETIRED}{version}-{n}"
    os.rename(folder / str(version), target)
    return target


def prune_versions(repository: Path, model: str, keep: int) -> list[int]:
    """Remove all but the newest ``keep`` versions; returns the removed numbers."""
    removed = versions(repository, model)[:-keep] if keep > 0 else []
    for old in removed:
        shutil.rmtree(repository / model / str(old), ignore_errors=True)
    return removed


def _remove_abandoned_staging(folder: Path) -> None:
    """Staging folders of writers that died (killed mid-export) are removed."""
    for staging in folder.glob(".staging-*"):
        pid = staging.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_version(
    repository: Path,
    spec: ModelSpec,
    fill: Callable[[Path, int], dict[str, Any]],
    keep: int = 2,
    version: int | None = None,
) -> int:
    """Write the next version of ``spec.name``.

    ``fill(staging_dir, version)`` writes the model files, checks them (export parity) and returns
    the metadata that travels with the version. Only when it returns is the folder renamed into
    place; on any error the staging folder is removed and the repository is as it was.
    Older versions beyond ``keep`` are removed (``keep=0``: none, the caller prunes once the
    new version serves). ``version`` (newer than any present) lets models
    published together share one number.
    """
    write_config(repository, spec)
    write_meta_model(repository)  # how clients read the metadata written below
    _remove_abandoned_staging(repository / spec.name)
    # Retired numbers count too: a number once served always means the same weights.
    newest = max(
        versions(repository, spec.name) + retired_versions(repository, spec.name), default=0
    )
    if version is None:
        version = newest + 1
    elif version <= newest:
        raise ValueError(f"{spec.name}: version {version} is not newer than {newest}")
    staging = repository / spec.name / f".staging-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        meta = fill(staging, version)
        meta = {"model": spec.name, "version": version, **meta}
        (staging / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        missing = [f for f in [spec.default_model_filename] if not (staging / f).exists()]
        if missing:
            raise FileNotFoundError(f"export wrote no {missing} into {staging}")
        os.rename(staging, repository / spec.name / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    prune_versions(repository, spec.name, keep)
    return version
