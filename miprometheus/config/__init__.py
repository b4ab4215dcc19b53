"""Configuration: YAML loading with provenance, nesting, overrides and schema validation."""

from miprometheus.config.loader import LoadedConfig, load_config, parse_overrides

__all__ = ["LoadedConfig", "load_config", "parse_overrides"]
