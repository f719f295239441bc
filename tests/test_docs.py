"""The docs: `make docs` without Quarto renders a navigable site (checked in headless Chromium), the Quarto path
leaves tracked files alone, README.md is what index.ipynb makes, and every public name has a doc entry"""
import os, subprocess, sys, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import build_docs

@pytest.fixture(scope='module')
def docs():
    "`tools/build_docs.py` run as `make docs` runs it (a subprocess), and the git status of the checkout before and after"
    st = lambda: subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=ROOT, capture_output=True, text=True).stdout
    before = st()
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py')], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return ROOT/'_docs', before, st()

@pytest.mark.skipif(shutil.which('quarto') is not None, reason='Quarto is installed: make docs uses nbdev-docs there')
def test_docs_build_renders_every_notebook_and_changes_no_file(docs):
    out, before, after = docs
    pages = {p.stem for p in out.glob('*.html')}
    nbs = {p.stem for p in (ROOT/'nbs').glob('*.ipynb')}
    assert nbs <= pages, f'not rendered: {sorted(nbs - pages)}'
    assert after == before, f'make docs changed the checkout (it may write only _docs/ and _proc/):\n{after}'
    index = (out/'index.html').read_text()
    assert 'make study' in index and 'href="10_tutorial.quick_study.html"' in index
    assert ('href="11_answer.html"' in index) == (ROOT/'nbs'/'11_answer.ipynb').exists()

def test_readme_is_in_sync_with_index():
    "README.md is written only by `make readme`; it must say what nbs/index.ipynb says"
    if shutil.which('quarto'): pytest.skip('Quarto is installed: make readme uses nbdev-readme there')
    assert (ROOT/'README.md').read_text() == build_docs.readme(), 'README.md is out of date with nbs/index.ipynb: run `make readme` and commit it'

def test_quarto_config_refresh_changes_no_tracked_file():
    "nbdev-docs first calls `refresh_quarto_yml()` (and the sidebar generator): neither may rewrite nbs/nbdev.yml or nbs/_quarto.yml"
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    files = [ROOT/'nbs'/'nbdev.yml', ROOT/'nbs'/'_quarto.yml']
    before = {f: f.read_text() for f in files}
    try:
        refresh_quarto_yml(); nbdev_sidebar.__wrapped__()
        changed = [f.name for f in files if f.read_text() != before[f]]
        assert not changed, f'nbdev rewrites {changed} (make them what nbdev writes, from pyproject.toml)'
        assert not (ROOT/'nbs'/'sidebar.yml').exists(), 'nbdev wrote nbs/sidebar.yml: keep custom_sidebar = true in pyproject.toml'
    finally:
        for f, t in before.items(): f.write_text(t)

# The site in a real browser: headless Chromium's DOM of the index and of an API page.
def _chromium():
    for b in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        if shutil.which(b): return shutil.which(b)
    if os.environ.get('CI'): pytest.fail('CI: no chromium: .ci/run installs it with apt-get (Debian package `chromium`); that failed')
    pytest.skip('chromium is not installed (apt-get install chromium); CI installs it and runs this test')

def _dom(browser:str, page:Path)->str:
    r = subprocess.run([browser, '--headless', '--no-sandbox', '--disable-gpu', '--dump-dom', page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '<body' in r.stdout, r.stderr[-2000:]
    return r.stdout

@pytest.mark.parametrize('stem', ['index', '05b_learner.core'])
def test_pages_in_headless_chromium(docs, stem):
    from bs4 import BeautifulSoup
    browser = _chromium()
    out = docs[0]
    pages = build_docs.load_pages(ROOT/'_proc', ROOT/'nbs')
    sections = build_docs.sidebar_sections(ROOT/'nbs'/'_quarto.yml', list(pages))
    dom = BeautifulSoup(_dom(browser, out/f'{stem}.html'), 'html.parser')
    title = pages[stem]['title']
    assert title in dom.title.get_text() and dom.select_one('h1.title').get_text(strip=True) == title
    # the sidebar: every page of nbs/_quarto.yml, as a plain link to a page that exists, this one marked current
    links = [a['href'] for a in dom.select('nav.sidebar li a')]
    assert links == [f'{s}.html' for _, ss in sections for s in ss]
    assert all((out/h).exists() for h in links)
    assert {'Core', 'Training', 'Tutorials'} <= {p.get_text() for p in dom.select('nav.sidebar .section')}
    assert dom.select_one('nav.sidebar a[aria-current=page]')['href'] == f'{stem}.html'
    # no directive text, no front matter, no prompts, no Quarto attribute syntax; code inside prose may name a directive
    for c in dom.select('p code, li code, td code'): c.decompose()
    text = dom.select_one('main').get_text()
    for bad in ('#|', 'output-file:', 'In [', '{target='): assert bad not in text, f'{stem}: raw {bad!r} in the page'
    local = [a['href'] for a in dom.select('main a[href]') if not a['href'].startswith(('http', '#'))]
    assert all((out/h.split('#')[0]).exists() for h in local), f'{stem}: broken local links'
    assert not [a for a in dom.select('main a[href^="https://mtlsyn.github.io"]')], f'{stem}: links to the public site left'
    if stem == 'index': assert '10_tutorial.quick_study.html' in local
    else: assert dom.select('.output.asis h3') and dom.select('a[target="_blank"]')  # show_doc entries with their source links

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

def _processed(nb:Path)->Path:
    "nbdev's processing of `nb` into `_proc/` (what `make docs` and nbdev-docs render): hidden cells dropped, `show_doc` run"
    from nbdev.serve import proc_nbs
    try: return Path(proc_nbs(n_workers=0, file_glob=nb.name))/nb.name  # one page, so another page's error does not hide this one's
    except Exception as e: pytest.fail(f'{e}\n{build_docs.PROC_HINT}')

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
def test_every_public_name_and_method_has_a_doc_entry(nb):
    mod = importlib.import_module(_module(nb))
    heads, prose = _entries(_processed(nb))
    missing = []
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj) and hasattr(obj, '__wrapped__'):
            if name not in heads: missing.append(name)
            if inspect.isclass(obj) and obj.__module__ == mod.__name__:
                missing += [m for m in _methods(obj) if m not in heads]
        elif f'`{name}`' not in prose: missing.append(f'{name} (named nowhere in the prose)')
    assert not missing, f"{nb.name} ({mod.__name__}) has no doc entry for: {', '.join(missing)}: add show_doc(...) cells"
