"""Build the docs site without Quarto: nbdev's own notebook processing, then a static page per notebook.

Where Quarto is installed, `make docs` runs `nbdev-docs` instead (the full Quarto site). Here,
`nbdev.serve.proc_nbs` (the function behind `nbdev-proc-nbs`, called directly because the CLI tries to
install Quarto) applies nbdev's processors into `_proc/`: hidden cells dropped, `show_doc` run, the
`# title` / `> description` cell turned into front matter. Each processed notebook then becomes
`_docs/<notebook>.html`, rendered here the way Quarto would render it:

- the title and description come from the front matter (never shown as text);
- Quarto cell options are honoured: `echo: false` hides the input, `output: false` the outputs,
  `include: false` (and nbdev's `hide`) the whole cell, `output: asis` renders Markdown output as Markdown;
- no `In [n]` prompts; Quarto link attributes (`[source](url){target="_blank" ...}`) become HTML attributes;
- every page carries the sidebar of `nbs/_quarto.yml` as plain `<a href="page.html">` links (no JavaScript);
- links to the public site (`doc_host`/`doc_baseurl`, nbdev's doc links) and to `X.ipynb` resolve to the
  local pages, and a notebook named in backticks (`05b_learner.core`) links to its page where it exists.

No notebook is executed (only nbdev's `show_doc` cells, as nbdev-docs does); `_proc/` is nbdev's cache, so a
rebuild re-processes only the notebooks that changed. Outputs go only to the ignored `_docs/` and `_proc/`.
`--readme` writes README.md from the processed `index.ipynb` (what `make readme` runs); nothing else writes it.
"""
import fnmatch, html, json, re, shutil, sys
from pathlib import Path

import yaml

# ---------------------------------------------------------------------------------------------------------
# Pages, their front matter, and the sidebar

def front_matter(nb:dict)->dict:
    "The YAML front matter nbdev's processing puts in the first raw cell of `nb` (empty when there is none)"
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'raw' and src.lstrip().startswith('---'):
            return yaml.safe_load(src.strip().strip('-')) or {}
    return {}

def load_pages(proc:Path, nbs:Path)->dict:
    "stem -> {title, description, output_file, nb} for every notebook of `nbs`, read from its processed copy in `proc`"
    pages = {}
    for src in sorted(nbs.glob('*.ipynb')):
        nb = json.loads((proc/src.name).read_text())
        fm = front_matter(nb)
        pages[src.stem] = dict(title=str(fm.get('title', src.stem)), description=str(fm.get('description', '') or ''),
                               output_file=fm.get('output-file', src.stem + '.html'), nb=nb)
    return pages

def _expand(item, stems:list)->list:
    "The notebook stems one `_quarto.yml` sidebar entry names (a file, an `auto:` glob, or an `href:`)"
    if isinstance(item, str): item = {'href': item}
    if 'auto' in item:
        pats = item['auto'] if isinstance(item['auto'], list) else [item['auto']]
        return [s for s in stems if any(fnmatch.fnmatch(s + '.ipynb', p) for p in pats)]
    s = Path(str(item.get('href', ''))).stem
    return [s] if s in stems else []

def sidebar_sections(quarto_yml:Path, stems:list)->list:
    "[(section title or None, [stems])] from `website.sidebar.contents` of `quarto_yml`; missing pages and empty sections dropped"
    cfg = yaml.safe_load(quarto_yml.read_text()) or {}
    sb = (cfg.get('website') or {}).get('sidebar') or {}
    if isinstance(sb, list): sb = sb[0] if sb else {}
    out = []
    for item in sb.get('contents', []):
        if isinstance(item, dict) and 'section' in item:
            ss = [s for sub in item.get('contents', []) for s in _expand(sub, stems)]
            if ss: out.append((str(item['section']), list(dict.fromkeys(ss))))
        else:
            ss = _expand(item, stems)
            if ss: out.append((None, ss))
    return out

# ---------------------------------------------------------------------------------------------------------
# Markdown and code

def _slug(text:str)->str:
    "Pandoc's (and so Quarto's and nbdev's doc links') heading identifier for `text`"
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower())
    s = re.sub(r'\s+', '-', s)
    return re.sub(r'^[^a-z]+', '', s) or 'section'

def _highlight(code:str, lang:str='python', attrs=None)->str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name, TextLexer
    try: lexer = get_lexer_by_name(lang or 'text')
    except Exception: lexer = TextLexer()
    return f'<pre class="highlight"><code>{highlight(code, lexer, HtmlFormatter(nowrap=True))}</code></pre>\n'

_ATTR_LINK = re.compile(r'\[([^\]\n]*)\]\(([^)\s]+)\)\{([^}\n]*)\}')

def _attr_links(md:str)->str:
    "Quarto's link attributes `[text](url){target=\"_blank\" style=\"...\"}` as an HTML link with those attributes"
    def f(m):
        attrs = ' '.join(f'{k}="{html.escape(v)}"' for k, v in re.findall(r'([\w-]+)="([^"]*)"', m.group(3)))
        return f'<a href="{html.escape(m.group(2))}" {attrs}>{m.group(1)}</a>'
    return _ATTR_LINK.sub(f, md)

class Markdown:
    "CommonMark with tables, Pygments-highlighted fences and Pandoc-style heading ids (unique per page)"
    def __init__(self):
        from markdown_it import MarkdownIt
        self.md = MarkdownIt('commonmark', {'html': True, 'highlight': _highlight}).enable(['table', 'strikethrough'])
        self.md.add_render_rule('heading_open', lambda renderer, *a: self._heading_open(*a))
        self.ids, self.toc = set(), []
    def _heading_open(self, tokens, idx, options, env):
        tok = tokens[idx]
        text = ''.join(c.content for c in (tokens[idx+1].children or []) if c.type in ('text', 'code_inline'))
        i, n = _slug(text), 1
        while i in self.ids: i, n = f'{_slug(text)}-{n}', n+1
        self.ids.add(i); tok.attrSet('id', i)
        if tok.tag == 'h2': self.toc.append((i, text))
        return f'<{tok.tag} id="{i}">'
    def __call__(self, text:str)->str: return self.md.render(_attr_links(text))
    def inline(self, text:str)->str: return self.md.renderInline(text)

_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')

def cell_options(src:str)->tuple[dict, str]:
    "Quarto's `#| key: value` options at the top of a code cell, and the source without them"
    lines, opts = src.splitlines(), {}
    while lines and lines[0].startswith('#|'):
        o = lines.pop(0)[2:].strip()
        k, _, v = o.partition(':')
        try: opts[k.strip()] = yaml.safe_load(v) if v.strip() else True
        except yaml.YAMLError: opts[k.strip()] = v.strip()
    return opts, '\n'.join(lines).strip('\n')

def _text(x)->str: return ''.join(x) if isinstance(x, list) else str(x)

def render_output(o:dict, md:Markdown, asis:bool)->str:
    "One Jupyter output as HTML: rich data first (HTML, images, Markdown), plain text last"
    t = o.get('output_type')
    if t == 'stream':
        return f'<pre class="output stream {o.get("name","")}">{html.escape(_ANSI.sub("", _text(o.get("text",""))))}</pre>\n'
    if t == 'error':
        tb = _ANSI.sub('', '\n'.join(o.get('traceback', [])) or f"{o.get('ename')}: {o.get('evalue')}")
        return f'<pre class="output error">{html.escape(tb)}</pre>\n'
    d = o.get('data', {})
    if asis and ('text/markdown' in d or 'text/plain' in d):
        return f'<div class="output asis">{md(_text(d.get("text/markdown", d.get("text/plain"))))}</div>\n'
    if 'text/html' in d: return f'<div class="output html">{_text(d["text/html"])}</div>\n'
    for mime in ('image/png', 'image/jpeg', 'image/gif'):
        if mime in d: return f'<div class="output image"><img src="data:{mime};base64,{_text(d[mime]).strip()}" alt=""></div>\n'
    if 'image/svg+xml' in d: return f'<div class="output image">{_text(d["image/svg+xml"])}</div>\n'
    if 'text/markdown' in d: return f'<div class="output markdown">{md(_text(d["text/markdown"]))}</div>\n'
    if 'text/plain' in d: return f'<pre class="output text">{html.escape(_ANSI.sub("", _text(d["text/plain"])))}</pre>\n'
    return ''

def render_cell(c:dict, md:Markdown)->str:
    "One processed cell as HTML, honouring Quarto's cell options; front matter and hidden cells give nothing"
    src = _text(c['source'])
    if c['cell_type'] == 'markdown':
        if src.lstrip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): return ''
        for k, v in (c.get('attachments') or {}).items():
            mime, data = next(iter(v.items()))
            src = src.replace(f'attachment:{k}', f'data:{mime};base64,{data}')
        return f'<section class="cell markdown">{md(src)}</section>\n'
    if c['cell_type'] != 'code': return ''  # raw cells: the front matter, shown as the title instead
    opts, code = cell_options(src)
    if opts.get('include') is False or opts.get('hide') is True: return ''
    asis = opts.get('output') == 'asis'
    parts = []
    if opts.get('echo', True) is not False and code.strip(): parts.append(f'<div class="input">{_highlight(code)}</div>')
    if opts.get('output', True) is not False:
        parts += [render_output(o, md, asis) for o in c.get('outputs', [])]
    parts = [p for p in parts if p]
    return f'<section class="cell code">{"".join(parts)}</section>\n' if parts else ''

# ---------------------------------------------------------------------------------------------------------
# Links and the page

def local_links(body:str, pages:dict, site_url:str)->str:
    "Point links at local pages: the public site's page names (nbdev's doc links), `X.ipynb`, and backticked notebook names"
    by_file = {p['output_file']: s for s, p in pages.items()}
    by_file.update({'index.html': 'index', '': 'index'})
    def href(m):
        url = html.unescape(m.group(1))
        path, hash_, frag = url.partition('#')
        rel = None
        if site_url and path.startswith(site_url): rel = path[len(site_url):].lstrip('/')
        elif not re.match(r'^[a-z][a-z0-9+.-]*:|^/|^#', url): rel = path.lstrip('./')
        if rel is not None:
            stem = by_file.get(rel) or (Path(rel).stem if Path(rel).suffix in ('.ipynb', '.html', '') and Path(rel).stem in pages else None)
            if stem: return f'href="{stem}.html{hash_}{html.escape(frag)}"'
        return m.group(0)
    body = re.sub(r'href="([^"]*)"', href, body)
    # a notebook named in backticks (`05b_learner.core`, `11_answer`) links to its page where that page exists
    def code(m):
        s = html.unescape(m.group(1)).removesuffix('.ipynb')
        return f'<a href="{s}.html"><code>{m.group(1)}</code></a>' if s in pages else m.group(0)
    parts = re.split(r'(<a\b.*?</a>|<pre\b.*?</pre>)', body, flags=re.S)  # never inside a link or a code block
    return ''.join(p if i % 2 else re.sub(r'<code>([^<]+)</code>', code, p) for i, p in enumerate(parts))

def sidebar_html(sections:list, pages:dict, current:str, site_title:str)->str:
    out = [f'<nav class="sidebar" aria-label="Site"><a class="brand" href="index.html">{html.escape(site_title)}</a>']
    for title, stems in sections:
        if title: out.append(f'<p class="section">{html.escape(title)}</p>')
        out.append('<ul>')
        for s in stems:
            cur = ' class="active" aria-current="page"' if s == current else ''
            label = 'Overview' if s == 'index' else pages[s]['title']  # the site's title is the brand link above
            out.append(f'<li><a href="{s}.html"{cur}>{html.escape(label)}</a></li>')
        out.append('</ul>')
    out.append('</nav>')
    return '\n'.join(out)

def _prev_next(order:list, stem:str, pages:dict)->str:
    if stem not in order: return ''
    i, links = order.index(stem), []
    if i > 0: links.append(f'<a class="prev" href="{order[i-1]}.html">← {html.escape(pages[order[i-1]]["title"])}</a>')
    if i < len(order)-1: links.append(f'<a class="next" href="{order[i+1]}.html">{html.escape(pages[order[i+1]]["title"])} →</a>')
    return f'<footer class="pager">{"".join(links)}</footer>'

def render_page(stem:str, pages:dict, sections:list, site:dict)->str:
    "The full HTML of one page: sidebar, title and description, the cells, a table of contents and prev/next links"
    p, md = pages[stem], Markdown()
    body = ''.join(render_cell(c, md) for c in p['nb']['cells'])
    body = local_links(body, pages, site['url'])
    desc = md.inline(p['description']) if p['description'] else ''
    toc = ''.join(f'<li><a href="#{i}">{md.inline(t)}</a></li>' for i, t in md.toc)
    order = [s for _, ss in sections for s in ss]
    title = p['title'] if stem == 'index' else f"{p['title']} – {site['title']}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<meta name="description" content="{html.escape(re.sub(r'[`*]', '', p['description']))}">
<link rel="stylesheet" href="site.css">
<link rel="stylesheet" href="styles.css">
</head>
<body>
{sidebar_html(sections, pages, stem, site['title'])}
<main>
<header class="page-header"><h1 class="title">{html.escape(p['title'])}</h1>
{f'<p class="description">{desc}</p>' if desc else ''}</header>
{f'<nav class="toc" aria-label="On this page"><p>On this page</p><ul>{toc}</ul></nav>' if toc else ''}
<article>
{body}
</article>
{_prev_next(order, stem, pages)}
</main>
</body>
</html>
"""

SITE_CSS = """
:root { --side: 17rem; --fg: #212529; --muted: #6c757d; --accent: #2780e3; --line: #dee2e6; --code: #f7f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
nav.sidebar { position: fixed; top: 0; bottom: 0; left: 0; width: var(--side); overflow-y: auto; padding: 1.2rem 1rem 2rem;
  border-right: 1px solid var(--line); background: #fafbfc; font-size: .9rem; }
nav.sidebar .brand { display: block; font-size: 1.35rem; font-weight: 600; color: var(--fg); margin-bottom: .8rem; }
nav.sidebar .section { margin: 1rem 0 .25rem; font-weight: 600; text-transform: uppercase; font-size: .75rem; letter-spacing: .04em; color: var(--muted); }
nav.sidebar ul { list-style: none; margin: 0; padding: 0; }
nav.sidebar li a { display: block; padding: .18rem .5rem; border-radius: 4px; color: #343a40; }
nav.sidebar li a.active { background: #e7f1fc; color: var(--accent); font-weight: 600; }
main { margin-left: var(--side); max-width: 62rem; padding: 1.5rem 2.5rem 4rem; }
header.page-header h1.title { font-size: 2.1rem; margin: .3rem 0 .4rem; }
header.page-header .description { color: var(--muted); font-size: 1.1rem; margin: 0 0 1.2rem; }
nav.toc { border-left: 3px solid var(--line); padding: .1rem 0 .1rem 1rem; margin: 0 0 1.5rem; font-size: .9rem; }
nav.toc p { margin: 0 0 .2rem; font-weight: 600; } nav.toc ul { margin: 0; padding-left: 1.1rem; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: .25rem; margin-top: 2rem; }
code { background: var(--code); padding: .05em .2em; border-radius: 3px; font-size: .88em; }
pre { background: var(--code); padding: .7rem .9rem; border-radius: 4px; overflow-x: auto; font-size: .85rem; line-height: 1.4; }
pre code { background: none; padding: 0; font-size: inherit; }
.cell.code .input pre { border-left: 3px solid var(--accent); }
pre.output { background: #fff; border: 1px solid var(--line); }
pre.output.stderr { background: #fff8f0; } pre.output.error { background: #fff0f0; }
.output.asis hr { border: 0; border-top: 1px solid var(--line); margin: 1.6rem 0 .4rem; }
.output.asis h3, .output.asis h4 { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; margin-top: .3rem; }
.output.image img { max-width: 100%; height: auto; }
.output.html { overflow-x: auto; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .25rem .55rem; text-align: left; vertical-align: top; }
thead th { background: #f1f3f5; }
blockquote { margin: 0; padding: .2rem 1rem; border-left: 4px solid var(--line); color: #495057; }
footer.pager { display: flex; justify-content: space-between; gap: 1rem; margin-top: 3rem; padding-top: 1rem; border-top: 1px solid var(--line); }
footer.pager .next { margin-left: auto; }
@media (max-width: 800px) { nav.sidebar { position: static; width: auto; border-right: 0; border-bottom: 1px solid var(--line); } main { margin-left: 0; padding: 1rem; } }
"""

def site_css()->str:
    from pygments.formatters import HtmlFormatter
    return SITE_CSS + HtmlFormatter(style='friendly').get_style_defs('.highlight')

# ---------------------------------------------------------------------------------------------------------
# README

def readme_text(index:dict, pages:dict, site_url:str)->str:
    "README.md from the processed index: `# title`, `> description`, then its cells as Markdown; local links to the public site"
    fm = front_matter(index)
    out = [f"# {fm.get('title', '')}", f"> {fm['description']}" if fm.get('description') else None]
    for c in index['cells']:
        src = _text(c['source']).strip('\n')
        if c['cell_type'] == 'markdown': out.append(src)
        elif c['cell_type'] == 'code':
            opts, code = cell_options(src)
            if opts.get('include') is False: continue
            if opts.get('echo', True) is not False and code: out.append(f'```python\n{code}\n```')
            for o in c.get('outputs', []):
                d = o.get('data', {})
                txt = _text(o.get('text', '')) or _text(d.get('text/markdown', d.get('text/plain', '')))
                if txt: out.append(txt if 'text/markdown' in d else f'```\n{txt.rstrip()}\n```')
    text = '\n\n'.join(o for o in out if o) + '\n'
    by_stem = {s: p['output_file'] for s, p in pages.items()}
    def link(m):
        path, hash_, frag = m.group(2).partition('#')
        s = Path(path).stem
        if Path(path).suffix == '.ipynb' and s in by_stem: return f'{m.group(1)}({site_url}{by_stem[s]}{hash_}{frag})'
        return m.group(0)
    return re.sub(r'(\]\s?)\(([^)\s:]+)\)', link, text)

# ---------------------------------------------------------------------------------------------------------

def site_info(cfg)->dict:
    url = (cfg.get('doc_host') or '') + (cfg.get('doc_baseurl') or '')
    return dict(title=cfg.get('title') or cfg.lib_name, url=url.rstrip('/') + '/' if url else '')

def process():
    "nbdev's processing of every notebook into `_proc/` (cached by modification time), and the pages read from it"
    from nbdev.config import get_config
    from nbdev.serve import proc_nbs
    cfg = get_config()
    try: proc = Path(proc_nbs(n_workers=0))
    except Exception as e: raise SystemExit(f'docs: {e}\n{PROC_HINT}') from e
    return cfg, proc, load_pages(proc, cfg.nbs_path)

def readme()->str:
    "README.md's text: only the index is processed; the other pages are named by the file names nbdev gives them"
    from nbdev.config import get_config
    from nbdev.doclinks import nbpath2html
    from nbdev.serve import proc_nbs
    cfg = get_config()
    index = json.loads((Path(proc_nbs(n_workers=0, file_glob='index.ipynb'))/'index.ipynb').read_text())
    pages = {p.stem: {'output_file': nbpath2html(p).name} for p in cfg.nbs_path.glob('*.ipynb')}
    return readme_text(index, pages, site_info(cfg)['url'])

PROC_HINT = ("docs: nbdev's processing runs only the cells the doc entries need: exported cells, `show_doc` cells and every "
             "cell with an import statement. A lesson cell that imports runs without the lesson cells before it: put its "
             "imports in a cell of their own (or the notebook's import cell).")

def build(out:Path|None=None)->Path:
    "Render every notebook into `out` (default `_docs/`); returns the folder"
    cfg, _, pages = process()
    site = site_info(cfg)
    sections = sidebar_sections(cfg.nbs_path/'_quarto.yml', list(pages))
    out = Path(out or cfg.config_path/'_docs')
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    for stem in pages: (out/f'{stem}.html').write_text(render_page(stem, pages, sections, site))
    (out/'site.css').write_text(site_css())
    css = cfg.nbs_path/'styles.css'
    (out/'styles.css').write_text(css.read_text() if css.exists() else '')
    return out

def main(argv:list):
    if '--readme' in argv or '--readme-only' in argv:
        from nbdev.config import get_config
        (get_config().config_path/'README.md').write_text(readme())
        return print('readme: wrote README.md from nbs/index.ipynb')
    out = build()
    n = len(list(out.glob('*.html')))
    print(f'docs: rendered {n} pages into {out.name}/ (open {out.name}/index.html)')

if __name__ == '__main__': main(sys.argv[1:])
