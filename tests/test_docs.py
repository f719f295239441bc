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

# Every public name and public method has a doc entry on its module's page, as the docs build renders it.
import importlib, inspect, json, re
from fastai.callback.core import event

NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb')
             if any(re.match(r'#\|\s*default_exp\s', ''.join(c['source'])) for c in json.loads(p.read_text())['cells']))

def _module(nb:Path)->str:
    for c in json.loads(nb.read_text())['cells']:
        m = re.match(r'#\|\s*default_exp\s+(\S+)', ''.join(c['source']))
        if m: return 'mtlsyn.' + m.group(1)

# Justified exceptions, by rule rather than by name:
# - a method that overrides one of a base class (e.g. `forward` of an `nn.Module`, `sample` of a `Generator` subclass)
#   is documented with the base class's method (or by PyTorch/fastai);
# - fastai callback events (`before_fit`, `after_batch`, ...) are called by the learner, never by a user;
# - a public name that is data rather than a callable (a registry, a constant) is documented in the page's prose:
#   it must be named there in backticks.
EVENTS = {e for e in dir(event) if not e.startswith('_')}

def _methods(cls)->list[str]:
    out = []
    for k, v in vars(cls).items():
        if k.startswith('_') or k in EVENTS: continue
        if not isinstance(v, (staticmethod, classmethod)) and not inspect.isfunction(v): continue
        if any(hasattr(b, k) for b in cls.__mro__[1:]): continue
        out.append(f'{cls.__name__}.{k}')
    return out

@pytest.fixture(scope='module')
def processed():
    "nbdev's processing of every notebook into `_proc/` (what `make docs` and nbdev-docs render): hidden cells dropped, `show_doc` run"
    from nbdev.serve import proc_nbs
    return Path(proc_nbs(n_workers=0))

def _entries(page:Path)->tuple[set, str]:
    "The names of the doc entries (`show_doc` headings) on a processed page, and the page's prose"
    cells = json.loads(page.read_text())['cells']
    heads = set()
    for c in cells:
        for o in c.get('outputs', []):
            md = ''.join(o.get('data', {}).get('text/markdown', ''))
            heads |= set(re.findall(r'^#{2,4} (\S+)\s*$', md, flags=re.M))
    prose = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')
    return heads, prose

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_every_public_name_and_method_has_a_doc_entry(processed, nb):
    mod = importlib.import_module(_module(nb))
    heads, prose = _entries(processed/nb.name)
    missing = []
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj) and hasattr(obj, '__wrapped__'):
            if name not in heads: missing.append(name)
            if inspect.isclass(obj) and obj.__module__ == mod.__name__:
                missing += [m for m in _methods(obj) if m not in heads]
        elif f'`{name}`' not in prose: missing.append(f'{name} (named nowhere in the prose)')
    assert not missing, f"{nb.name} ({mod.__name__}) has no doc entry for: {', '.join(missing)}: add show_doc(...) cells"
