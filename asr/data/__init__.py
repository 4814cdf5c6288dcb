"""Corpora: manifests, importers, splitting, the synthetic TTS corpus, batching."""

from asr.data.manifest import ManifestError, Utterance, read_manifest, write_manifest

__all__ = ["ManifestError", "Utterance", "read_manifest", "write_manifest"]
