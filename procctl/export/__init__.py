"""Exporting the manifest's services to the systems that run them in
production: systemd units, a docker compose file, a supervisord config.

Each format is one small module with a pure `render(Export) -> {file name:
text}`; `model` computes what they share from the manifest and its plan.
"""

from __future__ import annotations

from procctl.config.manifest import Manifest
from procctl.export.model import FORMATS, Export, Format, Options, build_export


def render(manifest: Manifest, fmt: Format, options: Options) -> tuple[dict[str, str], Export]:
    """The files that run `manifest`'s services under `fmt`, and the export
    they came from (its notes say what was left out)."""
    from procctl.export import compose, supervisord, systemd

    export = build_export(manifest, options)
    renderer = {"systemd": systemd.render, "compose": compose.render, "supervisord": supervisord.render}[fmt]
    return renderer(export), export


__all__ = ["FORMATS", "Format", "Options", "render"]
