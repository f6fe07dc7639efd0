"""Service settings: from CLI flags, else ``SHOPML_*`` environment variables, else defaults.

pydantic-settings parses the variables (``SHOPML_ACCESS_LOG=0`` is False, ``SHOPML_MAX_UPLOAD_BYTES=x``
is refused). The API's own limits (k, horizon, ids) are fixed and documented in the schema
(:mod:`shopml.serve.schemas`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """What the service serves and the limits it enforces.

    A work directory holds ``world/`` (catalog and images), and, when trained, ``rank/``,
    ``forecast/`` and ``visual/`` (``model/``, ``index/``, ``recs.parquet``) as ``shopml demo`` lays
    them out. A missing artefact disables its endpoints (503 with the reason) and shows in ``/ready``.
    """

    model_config = SettingsConfigDict(env_prefix="SHOPML_", frozen=True, extra="forbid")

    workdir: Path
    max_upload_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    batch_max_size: int = Field(default=32, ge=1)
    batch_max_wait_ms: float = Field(default=4.0, ge=0)
    forecast_chunk: int = Field(default=64, ge=1, description="products per forecast pass")
    device: str = "cpu"
    log_level: LogLevel = "info"
    access_log: bool = True

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ``SHOPML_<FIELD>`` variables; explicit ``overrides`` win.

        Raises:
            ValueError: naming the setting, what was expected and what was found.
        """
        values = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = ".".join(str(p) for p in error["loc"]) or "settings"
            if error["type"] == "missing" and name == "workdir":
                raise ValueError(
                    "workdir: expected --workdir or SHOPML_WORKDIR, found neither"
                ) from None
            raise ValueError(
                f"{name}: {error['msg'][:1].lower()}{error['msg'][1:]}, found {error.get('input')!r} "
                f"(from --{name.replace('_', '-')} or SHOPML_{name.upper()})"
            ) from None
