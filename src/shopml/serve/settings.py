"""Service settings: from CLI flags, else ``SHOPML_*`` environment variables, else defaults."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the service serves and the limits it enforces.

    A work directory holds ``world/`` (catalog and images), and, when trained, ``rank/``,
    ``forecast/`` and ``visual/`` (``model/``, ``index/``, ``recs.parquet``) as ``shopml demo`` lays
    them out. A missing artefact disables its endpoints (503 with the reason) and shows in ``/ready``.
    """

    workdir: Path
    max_upload_bytes: int = 8 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_k: int = 100
    max_horizon: int = 90
    max_candidates: int = 1000
    batch_max_size: int = 32
    batch_max_wait_ms: float = 4.0
    device: str = "cpu"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ``SHOPML_<FIELD>`` variables; explicit ``overrides`` win."""
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            env = os.environ.get(f"SHOPML_{field.name.upper()}")
            if env is not None:
                values[field.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "workdir" not in values:
            raise ValueError("workdir: expected --workdir or SHOPML_WORKDIR, found neither")
        kwargs: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            if field.name not in values:
                continue
            raw = values[field.name]
            caster = {"workdir": Path, "device": str}.get(field.name)
            if caster is None:
                caster = type(field.default)
            try:
                kwargs[field.name] = caster(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"{field.name}: expected {caster.__name__}, found {raw!r}"
                ) from exc
        return cls(**kwargs)
