"""Shared test settings and fixtures."""

import os

# Set before torch is imported: with pytest-xdist two workers share the 2 cores, and
# OpenMP threads that spin while waiting slow each other down several-fold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def sam2_weights_folder(tmp_path_factory):
    """A folder holding a randomly initialised sam2.1 hiera-tiny in the official
    checkpoint format ({"model": state_dict}), found through $SEMLAB_WEIGHTS by tests
    that set it: the real loading code runs, nothing is downloaded."""
    pytest.importorskip("sam2")
    from semlab.segment.sam2_backend import make_random_checkpoint

    folder = tmp_path_factory.mktemp("sam2-weights")
    make_random_checkpoint("sam2.1_hiera_tiny", folder, image_size=512, seed=0)
    return folder
