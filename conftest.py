"""Session-wide test settings for tests/ and the doctests in emg_lens/."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_preprocessing_cache(tmp_path_factory, monkeypatch):
    """Point the on-disk preprocessing cache at a per-session temporary folder, so test runs
    never fill (or read stale entries from) the user's ``runs/cache``."""
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path_factory.getbasetemp() / "emg_lens_cache"))
