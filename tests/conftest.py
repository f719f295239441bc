"Shared pytest fixtures: real MedMNIST files (skip when MEDMNIST_ROOT is unset), an isolated cache folder"
import os
from pathlib import Path
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture(scope='session')
def medmnist_root() -> Path:
    "The folder of official MedMNIST files: skip when `MEDMNIST_ROOT` is unset, fail when it names a missing folder"
    root = os.environ.get('MEDMNIST_ROOT')
    if not root: pytest.skip('needs the official MedMNIST files: set MEDMNIST_ROOT to their folder (e.g. ../shared/data/medmnist)')
    p = Path(root)
    if not p.is_dir(): pytest.fail(f'MEDMNIST_ROOT={root} is not a folder: point it at the MedMNIST files or unset it')
    return p.resolve()

@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    "Every test gets its own MTLSYN_CACHE, so no test reads a cache another one wrote (a session-wide one keeps heavy caches)"
    if not os.environ.get('MTLSYN_TEST_SHARED_CACHE'):
        monkeypatch.setenv('MTLSYN_CACHE', str(tmp_path_factory.mktemp('cache')))
