"""On-disk cache of built inference engines (TensorRT's serialised engines).

An engine is only valid for the model, the GPU and the runtime version it was built with, so
the cache key is (model sha256, GPU name, runtime version, build settings). Each file carries a
header with that key and the payload's own sha256; a file that is truncated, corrupt, or was
built for something else is reported and rebuilt, never trusted.

File layout: ``MAGIC``, one line of JSON (the key, ``payload_sha256``, ``payload_bytes``), the
payload. Writes go to a temporary file in the same folder, then an atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"LIVEFX-ENGINE 1\n"


@dataclass(frozen=True)
class EngineKey:
    model_sha256: str
    device: str  # the GPU's name, as the driver reports it
    runtime: str  # e.g. "tensorrt 10.7.0"
    settings: str  # e.g. "fp16 batch 1-8 3x256x256"

    def filename(self) -> str:
        def slug(s: str) -> str:
            return re.sub(r"[^A-Za-z0-9.]+", "-", s).strip("-")[:40]

        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return (
            f"{self.model_sha256[:16]}-{slug(self.device)}-{slug(self.runtime)}-{digest[:8]}.engine"
        )


def default_cache_dir() -> Path:
    """``$LIVEFX_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/livefx/engines`` (~/.cache/...)."""
    if os.environ.get("LIVEFX_ENGINE_CACHE"):
        return Path(os.environ["LIVEFX_ENGINE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "livefx" / "engines"


class EngineCache:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or default_cache_dir()

    def path(self, key: EngineKey) -> Path:
        return self.folder / key.filename()

    def load(self, key: EngineKey) -> bytes | None:
        """The cached payload for ``key``, or None (missing; or unusable, which is logged)."""
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("engine cache %s unreadable (%s): rebuilding", path, exc.strerror)
            return None
        problem = self._check(blob, key)
        if problem:
            log.warning("engine cache %s %s: rebuilding", path, problem)
            return None
        return blob[blob.index(b"\n", len(MAGIC)) + 1 :]

    @staticmethod
    def _check(blob: bytes, key: EngineKey) -> str | None:
        if not blob.startswith(MAGIC):
            return "is not a LiveFX engine file"
        end = blob.find(b"\n", len(MAGIC))
        if end < 0:
            return "has no header"
        try:
            header = json.loads(blob[len(MAGIC) : end])
        except ValueError:
            return "has a damaged header"
        if not isinstance(header, dict) or header.get("key") != asdict(key):
            return "was built for another model, GPU or runtime"
        payload = blob[end + 1 :]
        if len(payload) != header.get("payload_bytes"):
            return f"is truncated ({len(payload)} of {header.get('payload_bytes')} bytes)"
        if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
            return "is corrupt (payload sha256 differs)"
        return None

    def store(self, key: EngineKey, payload: bytes) -> Path:
        header = {
            "key": asdict(key),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "payload_bytes": len(payload),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".engine")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + payload)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
