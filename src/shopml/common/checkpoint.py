"""Checkpoints: weights (safetensors) + config (JSON) + package version, in one directory.

Layout of a checkpoint directory::

    model.safetensors   the state dict
    config.json         {"kind": ..., "config": {...}, "shopml_version": ..., "extra": {...}}

The config is stored whole, so a checkpoint loads without the code's defaults having to match:
fields the code no longer knows are rejected with a clear error, fields it added since take their
defaults.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from shopml import __version__
from shopml.common.io import atomic_path, write_json

C = TypeVar("C")

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def config_to_dict(config: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"config: expected a dataclass instance, found {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build dataclass ``cls`` from ``data``; lists become tuples where the field default is one."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"config: unknown field(s) {unknown} for {cls.__name__}")
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[key] = value
    return cls(**kwargs)


def save_checkpoint(
    path: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor],
    config: Any,
    kind: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save weights and config into directory ``path`` (created; files written atomically)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    meta = {
        "kind": kind,
        "config": config_to_dict(config),
        "shopml_version": __version__,
        "extra": extra or {},
    }
    write_json(path / CONFIG, meta)
    return path


def load_checkpoint(
    path: str | os.PathLike[str], kind: str, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(state_dict, meta)`` of a checkpoint directory written by :func:`save_checkpoint`."""
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise ValueError(
            f"checkpoint: expected {CONFIG} and {WEIGHTS} in {path}, found "
            f"{sorted(p.name for p in path.iterdir()) if path.is_dir() else 'no directory'}"
        )
    meta = json.loads((path / CONFIG).read_text())
    if meta.get("kind") != kind:
        raise ValueError(f"checkpoint: expected a {kind!r} checkpoint, found {meta.get('kind')!r}")
    state = load_file(str(path / WEIGHTS), device=str(map_location))
    return state, meta
