"""Test-session settings."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache_folder(tmp_path_factory):
    """Caches the code keeps in the user's cache folder (video indexes) go to a temporary one during the tests."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    patch.undo()
