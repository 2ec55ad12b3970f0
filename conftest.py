"""Session-wide test settings for tests/ and the doctests in emg_lens/."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory):
    """Point the preprocessing cache (``$EMG_LENS_CACHE``) and the user cache directory
    (``$XDG_CACHE_HOME``, where the cache goes when a test unsets ``EMG_LENS_CACHE``) at this
    session's temporary folder, for the whole session and its subprocesses, so test runs never
    fill the user's cache or read stale entries from it. A test that sets its own (with
    ``monkeypatch``) wins for its duration."""
    base = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMG_LENS_CACHE", str(base / "emg_lens_cache"))
        patch.setenv("XDG_CACHE_HOME", str(base / "xdg_cache"))
        yield
