"""Test-suite settings: hypothesis runs without per-example deadlines (CI machines vary)."""

from hypothesis import settings

settings.register_profile("tracr", deadline=None)
settings.load_profile("tracr")
