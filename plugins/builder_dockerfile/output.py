"""The build's progress stream, as dockerd's legacy builder writes it: text as
``{"stream": ...}`` messages, pull progress as they come, the image ID as
``{"aux": {"ID": ...}}``; with ``q`` the text is held back (and shown only
if the build fails)."""
from __future__ import annotations

from pallet.core.errors import PalletError


class StepFailed(PalletError):
    """A RUN step's command failed; ``code`` is its exit code (docker build
    exits with it)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class Output:
    """Where a build writes what it says (``progress`` takes docker's dicts)."""

    def __init__(self, progress, quiet: bool = False):
        self.progress = progress
        self.quiet = quiet
        self.held: list[dict] = []

    def _send(self, msg: dict) -> None:
        if self.quiet:
            self.held.append(msg)
        else:
            self.progress(msg)

    def write(self, text: str) -> None:
        if text:
            self._send({"stream": text})

    def raw(self, data: bytes) -> None:
        """A step's output, as it comes (decoded as the CLI would print it)."""
        if data:
            self._send({"stream": data.decode("utf-8", "replace")})

    def status(self, msg: dict) -> None:
        """Pull progress (already docker's messages)."""
        self._send(msg)

    def aux(self, image_id: str) -> None:
        self.progress({"aux": {"ID": image_id}})

    def release(self) -> None:
        """A quiet build failed: show what it held back."""
        held, self.held = self.held, []
        for msg in held:
            self.progress(msg)
