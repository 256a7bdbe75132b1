"""Model file formats: safetensors (single and sharded) parsing with full validation, the one
dtype table (:mod:`mgit.formats.dtypes`) and the one tensor-name pairing rule
(:mod:`mgit.formats.names`)."""

from __future__ import annotations

from mgit.formats.safetensors import SafetensorsHeader, TensorSpec, parse_header, read_header

__all__ = ["SafetensorsHeader", "TensorSpec", "parse_header", "read_header"]
