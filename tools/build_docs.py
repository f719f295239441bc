"""Build the docs without Quarto: nbdev's own notebook processing, then `jupyter nbconvert`.

Where Quarto is installed, `make docs` runs `nbdev-docs` instead (the full Quarto site). Here,
`nbdev.serve.proc_nbs` (the function behind `nbdev-proc-nbs`, called directly because the CLI tries
to install Quarto) applies nbdev's processors (hidden cells dropped, `show_doc` rendered, directives
stripped) into `_proc/`, and each processed notebook is rendered to `_docs/<name>.html`.
`--readme-only` writes README.md from the processed `index.ipynb` as Markdown.
"""
import sys, shutil, subprocess
from pathlib import Path

def _title_from_frontmatter(md:Path):
    "Replace the YAML front matter nbdev's processing leaves with the `# title` and `> description` lines nbdev-readme writes"
    import yaml
    txt = md.read_text()
    if not txt.startswith('---'): return
    _, fm, body = txt.split('---', 2)
    meta = yaml.safe_load(fm) or {}
    head = f"# {meta.get('title', '')}\n\n" + (f"> {meta['description']}\n" if meta.get('description') else '')
    md.write_text(head + '\n' + body.lstrip('\n'))

_CELL_KEYS = {'cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments'}

def _valid_nbformat(nb_path:Path):
    "Drop the cell keys nbdev's processing adds for Quarto (e.g. `has_sd`), which nbformat's schema (and so nbconvert) rejects"
    import json
    nb = json.loads(nb_path.read_text())
    for c in nb.get('cells', []):
        for k in [k for k in c if k not in _CELL_KEYS]: del c[k]
        c.get('metadata', {}).pop('execution', None)  # execnb's timings (numbers where the schema wants strings)
        if c.get('cell_type') != 'code': c.pop('outputs', None); c.pop('execution_count', None)
    nb_path.write_text(json.dumps(nb, indent=1))

def main(readme_only=False):
    from nbdev.config import get_config
    from nbdev.serve import proc_nbs
    cfg = get_config()
    root = cfg.config_path
    proc = Path(proc_nbs(n_workers=0))
    bin_ = Path(sys.executable).parent
    index = proc/'index.ipynb'
    for nb in proc.glob('*.ipynb'): _valid_nbformat(nb)
    # README.md: the processed index as Markdown (what nbdev-readme does through Quarto)
    subprocess.run([str(bin_/'jupyter'), 'nbconvert', '--to', 'markdown', '--log-level', 'WARN',
                    '--output-dir', str(root), '--output', 'README', str(index)], check=True)
    _title_from_frontmatter(root/'README.md')
    print(f"docs: wrote {root/'README.md'}")
    if readme_only: return
    out = root/'_docs'; out.mkdir(exist_ok=True)
    nbs = sorted(proc.glob('*.ipynb'))
    subprocess.run([str(bin_/'jupyter'), 'nbconvert', '--to', 'html', '--log-level', 'WARN',
                    '--output-dir', str(out), *map(str, nbs)], check=True)
    for f in ('styles.css',):
        if (proc/f).exists(): shutil.copy(proc/f, out/f)
    print(f"docs: rendered {len(nbs)} pages into {out}/ (open {out/'index.html'})")

if __name__ == '__main__': main(readme_only='--readme-only' in sys.argv)
