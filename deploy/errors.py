"""Errors of the deploy package, each a one-line message for the CLI."""

from __future__ import annotations

from search_spaces.errors import EdgeNasError

__all__ = ["ArtifactError", "CompileError", "ExportError", "RemoteError"]


class ExportError(EdgeNasError):
    """Weights do not fit the architecture, or ONNX export / parity failed."""


class CompileError(EdgeNasError):
    """Unknown target, missing cross compiler, failed TVM build or tuning."""


class ArtifactError(EdgeNasError):
    """An artifact folder is incomplete, tampered with, or cannot run here; or bad input to run."""


class RemoteError(EdgeNasError):
    """A TVM RPC tracker or board cannot be reached or fails to run the model."""
