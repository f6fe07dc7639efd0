"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shopml.serve.artefacts import Artefacts
from shopml.serve.settings import Settings


def get_artefacts(request: Request) -> Artefacts:
    return request.app.state.artefacts


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


ArtefactsDep = Annotated[Artefacts, Depends(get_artefacts)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
