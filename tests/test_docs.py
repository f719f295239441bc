"`make docs` without Quarto: nbdev's processing + nbconvert render every page, and README.md is what index.ipynb makes"
import subprocess, sys, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.mark.skipif(shutil.which('quarto') is not None, reason='Quarto is installed: make docs uses nbdev-docs there')
def test_docs_build_renders_every_notebook_and_readme_is_in_sync():
    readme = (ROOT/'README.md').read_text()
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py')], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    pages = {p.stem for p in (ROOT/'_docs').glob('*.html')}
    nbs = {p.stem for p in (ROOT/'nbs').glob('*.ipynb')}
    assert nbs <= pages, f'not rendered: {sorted(nbs - pages)}'
    assert 'make study' in (ROOT/'_docs'/'index.html').read_text()
    new = (ROOT/'README.md').read_text()
    if new != readme:
        (ROOT/'README.md').write_text(readme)  # leave the checkout as it was
        pytest.fail('README.md is out of date with nbs/index.ipynb: run `make readme` and commit it')
