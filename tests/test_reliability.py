"""Reliability (issue 11): study configs, grids, YAML, paths and the results store, tried as an adversarial user would.

Each numbered example of issue 11 in this half (classes 3, 4, 7, 9, 11) is a test here, beside more cases of its
class; property-based tests (hypothesis) cover budgets, config parsing and the store. The cache half is in
tests/test_reliability_caches.py."""
import json, os, signal, sys, textwrap
from pathlib import Path
import numpy as np
import pytest, yaml
from hypothesis import given, settings, HealthCheck, strategies as st

from mtlsyn.core import MtlsynError
from mtlsyn.data.core import parse_budget, budget_indices
from mtlsyn.study.config import load_study, study_runs, check_study, StudyConfig, EXEC_ONLY, StudyLoader
from mtlsyn.study import store as store_mod
from mtlsyn.study.store import ResultsStore, study_lock, record_line

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT/'studies'/'quick.yaml'

def _yaml(tmp_path, text, name='study.yaml'):
    p = tmp_path/name; p.write_text(textwrap.dedent(text)); return p

def _refused(cfg, *msgs):
    "`load_study(cfg)` raises a one-line `MtlsynError` containing every one of `msgs`"
    with pytest.raises(MtlsynError) as e: load_study(cfg)
    s = str(e.value)
    assert len(s.splitlines()) == 1, s
    for m in msgs: assert m in s, s
    return s

# ---------------------------------------------------------------- class 7: late and partial config checking
ISSUE_7 = [  # the issue's examples: accepted (or a raw exception) before, each now a one-line error naming the field and fix
    ('epochs: 0\n', 'epochs must be an integer ≥ 1'),
    ('epochs: -3\n', 'epochs must be an integer ≥ 1'),
    ('target_frac: 5\n', 'target_frac must be a number in (0, 1]'),
    ('seeds: [true]\n', 'seeds must be a list of integers'),
    ('seeds: 0\n', 'a count of seeds must be between 1'),
    ('', 'is empty'),
    ('epochs: 3\nbs: 8\nepochs: 30\n', "duplicate key 'epochs' on line 3"),
    ('bs: 0\n', 'bs must be an integer ≥ 1'),
    ('tasks: []\n', 'tasks must be a non-empty list'),
    ('tasks: classify\n', 'tasks must be a list, e.g. tasks: [classify]'),
]
@pytest.mark.parametrize('text,msg', ISSUE_7, ids=[t[0].strip() or 'empty' for t in ISSUE_7])
def test_issue_7_examples_are_refused_naming_the_field(tmp_path, text, msg):
    _refused(_yaml(tmp_path, text), msg)

MORE_7 = [  # more of the class: type, range and registry of every field, the new fields of issue 10 included
    (dict(lr=0), 'lr must be a finite number > 0'), (dict(lr=-1e-3), 'lr must be'), (dict(lr=float('nan')), 'lr is nan'),
    (dict(lr=float('inf')), 'lr is inf'), (dict(lr='1e-3'), 'lr must be'), (dict(bs=1.5), 'bs must be an integer'),
    (dict(bs=True), 'bs must be an integer'), (dict(size=0), 'size must be'), (dict(ratio=-1), 'ratio must be a number ≥ 0'),
    (dict(budget=0), 'budget must be'), (dict(budget=1.5), 'budget must be'), (dict(budget='lots'), 'budget must be'),
    (dict(pretrain_epochs=-1), 'pretrain_epochs must be'), (dict(template=-1), 'template must be'),
    (dict(seeds=[0, -1]), 'seeds must be a list of integers'), (dict(seeds=[0.5]), 'seeds must be a list of integers'),
    (dict(seeds='0'), 'seeds must be a non-empty list'), (dict(seeds=10**9), 'a count of seeds'),
    (dict(tasks=['classify', 'classify']), 'distinct'), (dict(tasks=['classify', 3]), 'tasks must be'),
    (dict(benchmark=['phantom']), 'benchmark must be a name'), (dict(benchmark='phantomm'), "unknown benchmark 'phantomm'"),
    (dict(text_mode='frozn'), "unknown text mode 'frozn'"), (dict(precision=16), 'precision must be a name'),
    (dict(benchmark_kwargs=[1]), 'benchmark_kwargs must be a mapping'), (dict(benchmark_kwargs={'difficulti': 0.5}), "phantom has no option 'difficulti'"),
    (dict(benchmark='breastmnist', benchmark_kwargs={'difficulty': 0.5}), "breastmnist has no option 'difficulty'"),
    (dict(benchmark='breastmnist', size=32), 'not a MedMNIST size'),
    (dict(generator='mixup', ratio=1, generator_kwargs={'alfa': 1}), "mixup has no option 'alfa'"),
    (dict(generator_kwargs='alpha=1'), 'generator_kwargs must be a mapping'),
    (dict(schedule='pretrain'), "schedule 'pretrain' needs a generator"),
    (dict(targets={'classify_auk': 0.7}), "unknown metric 'classify_auk'"), (dict(targets={'classify_auc': 'high'}), 'targets must be'),
    (dict(targets=[0.7]), 'targets must be a mapping'), (dict(baseline=''), 'baseline must be'),
    (dict(baseline='zzz', grid={'ratio': [0, 1]}), "baseline 'zzz' matches none"),
    (dict(baseline='ratio', grid={'ratio': [0, 1]}), 'matches 2 of the settings'),
    (dict(eval_every=0), 'eval_every must be'), (dict(eval_every=2.5), 'eval_every must be'),
    (dict(threads=0), 'threads must be'), (dict(threads='4'), 'threads must be'),
    (dict(imports='my_lab'), 'imports must be a list of module names'), (dict(imports=['../evil']), 'imports must be'),
    (dict(imports=['no_such_module_mtlsyn_test']), "imports: cannot import 'no_such_module_mtlsyn_test'"),
    (dict(val_budget=0), 'val_budget must be'), (dict(val_budget=-0.5), 'val_budget must be'),
    (dict(task_kwargs={'classify': {'bogus': 1}}), "classify has no option 'bogus'"), (dict(task_kwargs={'nope': {}}), "unknown task 'nope'"),
    (dict(task_kwargs={'classify': 'balanced'}), 'task_kwargs must be'),
    (dict(captions='reports'), "unknown captions 'reports'"), (dict(prompts=0), 'prompts must be'),
    (dict(resources={'num_cpus': -1}), 'resources must be'), (dict(resources={'num_gpus': 'all'}), 'resources must be'),
    (dict(tracking='wandb'), "unknown tracking 'wandb'"), (dict(engine='spark'), "unknown engine 'spark'"),
    (dict(description=['a']), 'description must be text'), (dict(root=3), 'root must be'),
    (dict(epochz=3), "unknown key 'epochz'"), (dict(grid=[1]), 'grid must map field names'),
]
@pytest.mark.parametrize('cfg,msg', MORE_7, ids=[f"{k}={v!r}"[:40] for c, _ in MORE_7 for k, v in list(c.items())[:1]])
def test_every_field_is_checked_for_type_range_and_registry(cfg, msg):
    _refused(cfg, msg)

def test_grid_values_are_checked_like_the_field(tmp_path):
    _refused(dict(grid={'lr': [0.1, -1]}), "grid 'lr': lr must be a finite number > 0", '(got -1)')
    _refused(dict(grid={'tasks': ['classify', 'contrastive']}), "grid 'tasks': tasks must be a list, e.g. tasks: [classify]")
    _refused(dict(grid={'generator,ratio': [['mixup', -1]]}), 'ratio must be a number ≥ 0')
    _refused(dict(grid={'epochs': [8, 0]}), 'epochs must be an integer ≥ 1')

def test_impossible_values_only_a_legal_lr_that_diverges_is_accepted():
    "Range checks refuse the impossible, not the unwise: `lr: 1e30` runs, and is recorded diverged by the runner"
    assert load_study(dict(lr=1e30, target_frac=1, epochs=1, bs=1, seeds=[0, 2**32-1], ratio=0)).lr == 1e30

@pytest.mark.parametrize('text,msg', [
    ('description: 2024-01-01\n', "a date"), ('lr: .nan\n', 'lr is nan'), ('- a\n- b\n', 'must be a mapping'),
    ('grid: {ratio: !!set {1, 2}}\n', 'a set'), ('bs: [\n', 'is not valid YAML'), ('{[1]: 2}\n', 'is not valid YAML'),
    ('x' * 20 + ': !!python/object:os.system {}\n', 'is not valid YAML'),
])
def test_bad_yaml_is_a_one_line_error(tmp_path, text, msg):
    _refused(_yaml(tmp_path, text), msg)

def test_config_paths_that_are_not_yaml_files(tmp_path):
    _refused(tmp_path, 'is a folder')
    _refused(tmp_path/'none.yaml', 'does not exist')
    (tmp_path/'bin.yaml').write_bytes(b'\xff\xfe\x00bad')
    _refused(tmp_path/'bin.yaml', 'cannot be read')

def test_dry_run_checks_everything_before_anything_is_built(tmp_path, monkeypatch, capsys):
    "`mtlsyn-study --dry-run` refuses an impossible value with one line and exit code 2 (in this process: no torch re-import)"
    import runpy
    for text, msg in [('epochs: 0\n', 'epochs must be an integer ≥ 1'), ('tasks: classify\n', 'tasks must be a list, e.g. tasks: [classify]')]:
        cfg = _yaml(tmp_path, text)
        script = tmp_path/'mtlsyn-study'
        script.write_text('import sys\nfrom mtlsyn.study.cli import mtlsyn_study\nsys.exit(mtlsyn_study())\n')
        monkeypatch.setattr(sys, 'argv', [str(script), str(cfg), '--dry-run', '--out', str(tmp_path/'out')])
        with pytest.raises(SystemExit) as e: runpy.run_path(str(script), run_name='__main__')
        out, err = capsys.readouterr()
        assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path/'out').exists()

# ---------------------------------------------------------------- new fields: defaults keep run ids, execution-only never hashed
def test_new_fields_at_their_defaults_keep_published_run_ids():
    runs = study_runs(load_study(QUICK))
    assert [r.run_id for r in runs[:3]] == ['32a6d7f96685', '2c04a06e306c', '67c85a4702da']
    assert runs[0].captions == 'report' and runs[0].val_budget == 'all' and runs[0].threads is None

def test_execution_only_fields_never_enter_run_id_and_cannot_be_swept():
    d = yaml.safe_load(QUICK.read_text())
    ids = [r.run_id for r in study_runs(load_study(d))]
    other = dict(d, threads=3, imports=['json'], resources={'num_cpus': 1}, tracking='mlflow', tracking_uri='sqlite:///x.db', engine='ray')
    assert set(EXEC_ONLY) == {'threads', 'imports', 'resources', 'tracking', 'tracking_uri', 'engine'}
    assert [r.run_id for r in study_runs(load_study(other))] == ids
    assert study_runs(load_study(other))[0].threads == 3
    for k, vals in [('threads', [1, 2]), ('engine', ['local', 'ray'])]: _refused(dict(grid={k: vals}), 'execution-only')

@pytest.mark.parametrize('field,value', [('targets', {'classify_auc': 0.75}), ('eval_every', 5), ('val_budget', 10),
                                         ('task_kwargs', {'classify': {'head': 'linear'}}), ('captions', 'class'), ('prompts', 3)])
def test_a_new_field_off_its_default_gives_new_run_ids(field, value):
    d = yaml.safe_load(QUICK.read_text())
    a, b = study_runs(load_study(d)), study_runs(load_study(dict(d, **{field: value})))
    assert a[0].run_id != b[0].run_id and a[0].setting == b[0].setting and getattr(b[0], field) == value

# ---------------------------------------------------------------- class 3: duplicate records counted as seeds (config half)
@pytest.mark.parametrize('cfg,msg', [
    (dict(seeds=[0, 0]), 'seeds lists 0 twice'), (dict(seeds=[1, 2, 1]), 'seeds lists 1 twice'),
    (dict(grid={'budget': [10, '10']}), 'same setting'), (dict(grid={'budget': [10, 10.0]}), 'same setting'),
    (dict(grid={'budget': ['all', 'ALL']}), 'same setting'), (dict(grid={'ratio': [1, 1.0]}), 'same setting'),
    (dict(grid={'lr': [0.001, 1e-3]}), 'same setting'), (dict(grid={'tasks': [['classify'], ['classify']]}), 'same setting'),
    (dict(grid={'generator,ratio': [['mixup', 1], ['mixup', 1.0]]}), 'same setting'),
    (dict(grid={'weighting': ['equal', 'equal']}), 'same setting'),
])
def test_repeated_seeds_and_indistinguishable_grid_values_are_refused(cfg, msg):
    _refused(cfg, msg)

def test_console_summary_counts_each_run_once():
    "Two records of one run (a second writer, or a retry) count once, as the last: issue 3's '4 seeds for 2'"
    from mtlsyn.study.runner import summarize
    recs = [dict(run_id=f'r{i}', status='ok', seed=i, cfg_setting='a', cfg_tasks='classify', val_classify_auc=0.5 + i/10) for i in range(2)]
    df = summarize(recs + recs)
    assert df['seeds'].tolist() == [2]

# ---------------------------------------------------------------- class 11: grids (swept twice, size) and YAML aliases
@pytest.mark.parametrize('grid', [{'ratio': [0, 1], 'generator,ratio': [['none', 0], ['mixup', 1]]},
                                  {'ratio,ratio': [[0, 1]]}, {'generator,ratio': [['none', 0]], 'ratio, generator': [[0, 'none']]}])
def test_a_field_swept_twice_is_refused(grid):
    _refused(dict(grid=grid), 'twice', 'sweep each field in one key')

@pytest.mark.timeout(60)
def test_a_million_run_grid_fails_at_once_and_a_large_one_warns(capsys):
    _refused(dict(grid={'lr': [1e-4 * (i + 1) for i in range(1000)], 'bs': list(range(1, 1001))}), '1,000,000 runs', 'split the study')
    _refused(dict(seeds=1000, grid={'lr': [1e-4 * (i + 1) for i in range(1000)]}), '1,000,000 runs')
    cfg = load_study(dict(grid={'lr': [1e-4 * (i + 1) for i in range(101)], 'bs': list(range(1, 101))}))
    assert 'has 10,100 runs' in capsys.readouterr().err
    assert len(cfg.grid['lr']) == 101

def _laughs(levels=9, width=9)->str:
    "The issue's 'billion laughs': `levels` nested anchors, each a list of `width` aliases of the one before"
    names = 'abcdefghijklmnopqrstuvwxyz'
    lines = [f'a: &a [{", ".join(["lol"] * width)}]']
    lines += [f'{x}: &{x} [{", ".join(["*" + p] * width)}]' for p, x in zip(names, names[1:levels])]
    return '\n'.join(lines) + '\n'

@pytest.mark.timeout(60)
def test_billion_laughs_is_refused_at_once(tmp_path):
    text = _laughs(); assert len(text) < 700   # the issue's was 624 bytes, and hung --dry-run at 3.4 GB
    _refused(_yaml(tmp_path, text), 'expands to more than 100,000 values through its aliases')
    _refused(_yaml(tmp_path, 'grid: &g {ratio: [*g]}\n'), 'recursive alias')
    _refused(_yaml(tmp_path, 'grid: ' + '[' * 5000 + ']' * 5000 + '\n'), 'nested too deeply')

def test_ordinary_anchors_and_merge_keys_still_work(tmp_path):
    cfg = load_study(_yaml(tmp_path, "tasks: &one [classify]\ngrid:\n  tasks: [*one, [classify, contrastive]]\n"))
    assert cfg.grid['tasks'] == [['classify'], ['classify', 'contrastive']]
    d = yaml.load('x: &x {lr: 0.1, bs: 4}\ny: {<<: *x, bs: 8}\n', Loader=StudyLoader)
    assert d['y'] == {'lr': 0.1, 'bs': 8}

# ---------------------------------------------------------------- class 9: paths from configs
@pytest.mark.parametrize('name', ['../../x', '/tmp/x', 'a/b', '.hidden', '..', '', 'x' * 101, 'a\\b', 'a b', 'runs/../x'])
def test_a_study_name_that_could_leave_the_study_folder_is_refused(name):
    _refused(dict(name=name), 'name must be a folder-safe name')

def test_safe_study_names_are_accepted():
    for name in ['quick', 'breast-20_per.class', '2024']: assert load_study(dict(name=name)).name == name

# ---------------------------------------------------------------- classes 4 and 11: the results store
def _lines(p): return Path(p).read_text().splitlines()

def test_issue_4_a_complete_last_record_without_newline_is_kept(tmp_path):
    s = ResultsStore(tmp_path/'results.jsonl')
    s.path.write_text('{"run_id": "a", "status": "ok"}\n{"run_id": "b", "status": "ok"}')
    s.append({'run_id': 'c', 'status': 'ok'})
    assert [r['run_id'] for r in ResultsStore(s.path).records()] == ['a', 'b', 'c']
    assert s.path.read_text().endswith('\n') and len(_lines(s.path)) == 3

@pytest.mark.parametrize('cut', ['{"run_id": "b", "sta', '{', '{"run_id": "b"', '\x00\x00', '{"a": 1}}'])
def test_a_cut_final_line_is_skipped_then_cut_off_and_nothing_else_is_lost(tmp_path, cut, capsys):
    s = ResultsStore(tmp_path/'results.jsonl')
    s.append({'run_id': 'a', 'status': 'ok'})
    with open(s.path, 'a') as f: f.write(cut)
    assert [r['run_id'] for r in s.records()] == ['a']
    s.append({'run_id': 'c', 'status': 'ok'})
    assert [r['run_id'] for r in ResultsStore(s.path).records()] == ['a', 'c'] and len(_lines(s.path)) == 2
    assert 'warning' in capsys.readouterr().err

@pytest.mark.parametrize('line', ['[1, 2]', '"text"', '3', 'null', 'true', '{"run_id": "x"} trailing'])
def test_a_line_that_is_not_a_record_is_skipped_with_a_warning(tmp_path, line, capsys):
    s = ResultsStore(tmp_path/'results.jsonl')
    s.path.write_text(f'{{"run_id": "a", "status": "ok"}}\n{line}\n{{"run_id": "b", "status": "failed"}}\n')
    assert [r['run_id'] for r in s.records()] == ['a', 'b']
    assert s.done_ids() == {'a'} and [r['run_id'] for r in s.latest()] == ['a', 'b']
    s.append({'run_id': 'b', 'status': 'ok'})
    assert s.done_ids() == {'a', 'b'}
    assert 'results.jsonl:2' in capsys.readouterr().err

def test_summaries_keep_the_last_record_of_each_run(tmp_path):
    s = ResultsStore(tmp_path/'results.jsonl')
    for r in [('a', 'failed'), ('b', 'ok'), ('a', 'ok'), ('b', 'ok')]: s.append({'run_id': r[0], 'status': r[1], 'n': len(s.records())})
    assert [(r['run_id'], r['status'], r['n']) for r in s.latest()] == [('a', 'ok', 2), ('b', 'ok', 3)]

def test_records_are_strict_json_without_nan_tokens(tmp_path):
    s = ResultsStore(tmp_path/'results.jsonl')
    s.append({'run_id': 'a', 'status': 'ok', 'x': float('nan'), 'y': np.float32('-inf'), 'z': [np.nan, 1.0],
              'w': {'v': np.float64('inf')}, 'i': np.int64(3), 'b': np.bool_(True), 'arr': np.array([1.5, np.nan])})
    def _no_constants(c): raise AssertionError(f"bare {c} in a record")
    r = json.loads(s.path.read_text(), parse_constant=_no_constants)
    assert r == {'run_id': 'a', 'status': 'ok', 'x': None, 'y': None, 'z': [None, 1.0], 'w': {'v': None}, 'i': 3, 'b': True, 'arr': [1.5, None]}
    assert record_line({'a': float('nan')}) == '{"a": null}\n'

def test_files_are_written_with_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        s = ResultsStore(tmp_path/'study'/'results.jsonl'); s.append({'run_id': 'a', 'status': 'ok'})
        with study_lock(tmp_path/'study'): pass
        c = s.claim('b'); c.release()
        for p in [s.path, tmp_path/'study'/'.lock', tmp_path/'study'/'.claims'/'b']: assert p.stat().st_mode & 0o777 == 0o644, p
    finally: os.umask(old)

def test_appends_read_only_the_last_line(tmp_path, monkeypatch):
    "O(1) per append: a 4 MB results file is not re-read (issue 11: appends were O(n²) over a study)"
    s = ResultsStore(tmp_path/'results.jsonl')
    s.path.write_text(''.join(record_line({'run_id': f'r{i}', 'status': 'ok', 'pad': 'x' * 400}) for i in range(10_000)))
    read = []
    class _Counting:
        def __init__(self, f): self.f = f
        def read(self, *a): b = self.f.read(*a); read.append(len(b)); return b
        def __getattr__(self, k): return getattr(self.f, k)
        def __enter__(self): self.f.__enter__(); return self
        def __exit__(self, *a): return self.f.__exit__(*a)
    monkeypatch.setattr(store_mod, 'open', lambda *a, **k: _Counting(open(*a, **k)), raising=False)
    for i in range(3): s.append({'run_id': f'new{i}', 'status': 'ok'})
    assert sum(read) < 100, read
    with open(s.path, 'a') as f: f.write('{"run_id": "cut", "sta')
    s.append({'run_id': 'after', 'status': 'ok'})
    assert sum(read) < 140_000, sum(read)   # the last line and one chunk before it, not the 4 MB

def test_done_ids_reads_only_what_was_appended(tmp_path):
    s = ResultsStore(tmp_path/'results.jsonl')
    for i in range(50): s.append({'run_id': f'r{i}', 'status': 'ok'})
    assert len(s.done_ids()) == 50
    end = s._cache[s.path]['end']
    s.append({'run_id': 'r50', 'status': 'ok'})
    assert len(s.done_ids()) == 51 and s._cache[s.path]['end'] > end
    s.path.write_text('{"run_id": "z", "status": "ok"}\n')   # a file replaced or shrunk is read again
    assert s.done_ids() == {'z'}

def test_an_unsharded_resume_sees_the_shards_records(tmp_path):
    for i, ids in enumerate([['a', 'b'], ['c']]):
        sh = ResultsStore(tmp_path/f'results-{i}of2.jsonl')
        for x in ids: sh.append({'run_id': x, 'status': 'ok'})
    (tmp_path/'results-backup.jsonl').write_text('{"run_id": "zzz", "status": "ok"}\n')   # not a results file of the study
    s = ResultsStore(tmp_path/'results.jsonl')
    assert s.done_ids() == {'a', 'b', 'c'}
    assert ResultsStore(tmp_path/'results-1of2.jsonl').done_ids() == {'a', 'b', 'c'}
    assert s.claim('a') is None and s.claim('d') is not None

# ---------------------------------------------------------------- class 3: one writer at a time (processes)
# Writers are forked from this process (everything already imported), so they start at once and truly overlap.
_FORK = __import__('multiprocessing').get_context('fork')

def _writer(path, n, go, backwards):
    import time
    s = ResultsStore(path); go.wait()
    for i in (reversed(range(n)) if backwards else range(n)):   # they meet in the middle: each then reaches runs the other did
        c = s.claim(f'run{i}')
        if c is None: continue
        with c:
            time.sleep(0.002)
            s.append({'run_id': f'run{i}', 'status': 'ok', 'pid': os.getpid()})

@pytest.mark.timeout(120)
def test_two_processes_on_one_store_record_every_run_once(tmp_path):
    go = _FORK.Event()
    procs = [_FORK.Process(target=_writer, args=(tmp_path/'results.jsonl', 80, go, k == 1)) for k in range(2)]
    for p in procs: p.start()
    go.set()
    for p in procs: p.join(100); assert p.exitcode == 0
    recs = ResultsStore(tmp_path/'results.jsonl').records()
    assert sorted(r['run_id'] for r in recs) == sorted(f'run{i}' for i in range(80))   # every run, none twice
    assert len(_lines(tmp_path/'results.jsonl')) == 80

def _appender(path, tag, go):
    s = ResultsStore(path); go.wait()
    for i in range(200): s.append({'run_id': f'{tag}{i}', 'status': 'ok', 'pad': 'x' * (i % 50)})

@pytest.mark.timeout(120)
def test_concurrent_appends_never_interleave_or_lose_a_line(tmp_path):
    go = _FORK.Event()
    procs = [_FORK.Process(target=_appender, args=(tmp_path/'results.jsonl', t, go)) for t in 'ab']
    for p in procs: p.start()
    go.set()
    for p in procs: p.join(100); assert p.exitcode == 0
    assert len({r['run_id'] for r in ResultsStore(tmp_path/'results.jsonl').records()}) == 400 == len(_lines(tmp_path/'results.jsonl'))

def _holder(d, ready, done):
    with study_lock(d): ready.set(); done.wait(60)

@pytest.mark.timeout(120)
def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over(tmp_path, capsys):
    d, ready, done = tmp_path/'study', _FORK.Event(), _FORK.Event()
    p = _FORK.Process(target=_holder, args=(d, ready, done)); p.start()
    assert ready.wait(60)
    with pytest.raises(MtlsynError, match=f"in use by another mtlsyn-study \\(process {p.pid}\\)"):
        with study_lock(d): pass
    with pytest.raises(MtlsynError, match='in use'):
        with study_lock(d, shard='0/2'): pass
    os.kill(p.pid, signal.SIGKILL); p.join()
    with study_lock(d): pass
    assert f'left by process {p.pid}, which is no longer running' in capsys.readouterr().err
    with study_lock(d): pass   # a clean exit leaves no stale pid behind
    assert 'left by process' not in capsys.readouterr().err

def test_shards_share_a_folder_but_not_a_shard(tmp_path):
    with study_lock(tmp_path, '0/2'), study_lock(tmp_path, '1/2'):
        with pytest.raises(MtlsynError, match='in use'):
            with study_lock(tmp_path, '0/2'): pass
        with pytest.raises(MtlsynError, match='in use'):
            with study_lock(tmp_path): pass
    with pytest.raises(MtlsynError, match='not of the form i/n'):
        with study_lock(tmp_path, '../x'): pass

def test_a_claim_is_taken_once_and_released_by_its_record(tmp_path):
    s, t = ResultsStore(tmp_path/'results.jsonl'), ResultsStore(tmp_path/'results-0of2.jsonl')
    c = s.claim('r1')
    assert c is not None and t.claim('r1') is None       # held elsewhere
    s.append({'run_id': 'r1', 'status': 'failed'}); c.release()
    assert t.claim('r1') is None                          # recorded by another writer since t was opened: not run twice
    assert ResultsStore(s.path).claim('r1') is not None   # a later study retries the failed run
    with pytest.raises(MtlsynError): s.claim('../x')

# ---------------------------------------------------------------- property-based: budgets, config parsing, the store
@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=2, max_size=5), b1=st.integers(1, 40), b2=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_budget_indices_nest_and_give_each_class_its_quota(counts, b1, b2, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(y)
    lo, hi = sorted((b1, b2))
    if hi > min(counts):
        with pytest.raises(MtlsynError): budget_indices(y, hi, seed)
        return
    a, b = budget_indices(y, lo, seed), budget_indices(y, hi, seed)
    assert set(a) <= set(b)                                             # a smaller budget is a subset of a larger one
    assert np.bincount(y[b], minlength=len(counts)).tolist() == [hi] * len(counts)
    assert list(a) == sorted(set(a)) and budget_indices(y, lo, seed).tolist() == a.tolist()

@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 60), min_size=2, max_size=4), f=st.floats(0.01, 0.99), seed=st.integers(0, 1000))
def test_fractional_budgets_keep_every_class_in_proportion(counts, f, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    q = [int(np.floor(f * n + 0.5)) for n in counts]
    if min(q) < 1:
        with pytest.raises(MtlsynError): budget_indices(y, f, seed)
        return
    assert np.bincount(y[budget_indices(y, f, seed)], minlength=len(counts)).tolist() == q

@given(st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)))
def test_parse_budget_returns_a_valid_budget_or_refuses(b):
    try: v = parse_budget(b)
    except MtlsynError: return
    assert v == 'all' or (isinstance(v, float) and 0 < v < 1) or (type(v) is int and v >= 1)

_FIELDS = [f for f in StudyConfig.__dataclass_fields__ if f != 'imports']   # random imports could import any installed module
_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                                 st.text(max_size=6), st.sampled_from(['classify', 'mixup', 'all', 'phantom', 'equal', '10', 'ray'])),
                       lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.sampled_from(_FIELDS + ['x', 'classify']), c, max_size=3)),
                       max_leaves=8)

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_FIELDS + ['epochz']), _VALUES, max_size=4))
def test_random_configs_load_or_give_a_one_line_mtlsyn_error(d):
    try: cfg = load_study(d)
    except MtlsynError as e:
        assert len(str(e).splitlines()) == 1
        return
    check_study(cfg)
    assert len({r.run_id for r in study_runs(cfg)}) == len(study_runs(cfg))

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80) | st.sampled_from(['a: &a [1]\nb: *a\n', 'grid:\n  ratio: [0, 1]\n', 'seeds: 3\n', '!!binary aGk=\n']))
def test_random_yaml_loads_or_gives_a_one_line_mtlsyn_error(tmp_path, text):
    p = tmp_path/'random.yaml'; p.write_text(text, encoding='utf-8')
    try: load_study(p)
    except MtlsynError as e: assert len(str(e).splitlines()) == 1

_RECORD = st.fixed_dictionaries({'run_id': st.text('abc', min_size=1, max_size=2), 'status': st.sampled_from(['ok', 'failed'])},
                                optional={'v': st.floats(allow_nan=True) | st.integers() | st.text(max_size=5)})
_OPS = st.lists(st.one_of(st.tuples(st.just('append'), _RECORD), st.tuples(st.just('cut'), _RECORD, st.floats(0, 0.99)),
                          st.tuples(st.just('junk'), st.sampled_from(['[1]', '"x"', '7', 'null'])), st.tuples(st.just('nonl'), _RECORD)),
                max_size=12)

@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_OPS)
def test_the_store_returns_exactly_the_complete_records(tmp_path_factory, ops):
    "Random appends, crashes mid-write (a cut line), foreign non-object lines and a last record without its newline"
    d = tmp_path_factory.mktemp('store')
    s, model, dangling = ResultsStore(d/'results.jsonl'), [], None   # dangling: the file's unterminated last line, if any
    def _raw(text):
        with open(s.path, 'a') as f: f.write(text)
    for op in ops:
        if op[0] == 'append':
            if dangling == 'whole': pass   # kept, and given its newline
            s.append(op[1]); model.append(json.loads(record_line(op[1]))); dangling = None
        elif dangling is not None: continue   # a crash leaves one unterminated line at most: the next writer is the store
        elif op[0] == 'cut':
            line = record_line(op[1]); _raw(line[:max(1, int(len(line) * op[2]))][:len(line) - 2]); dangling = 'cut'
        elif op[0] == 'junk': _raw(op[1] + '\n')
        else: _raw(record_line(op[1]).rstrip('\n')); model.append(json.loads(record_line(op[1]))); dangling = 'whole'
        assert s.records() == model and ResultsStore(s.path).records() == model


# ---- determinism: the same seed and thread count give bitwise-identical metrics, in-process and isolated
def test_same_seed_is_bitwise_identical_in_process_and_isolated(tmp_path):
    from mtlsyn.study.runner import run_study
    cfg = dict(name='det', benchmark='phantom', budget=8, benchmark_kwargs=dict(n_train=120, n_val=40, n_test=40),
               tasks=['classify', 'contrastive'], text_encoder='learned', generator='mixup', ratio=1,
               epochs=2, bs=16, seeds=[0], threads=1)
    a = run_study(cfg, tmp_path/'in', isolate=False, log=lambda *_: None)
    b = run_study(cfg, tmp_path/'iso', isolate=True, log=lambda *_: None)
    assert [r['status'] for r in a + b] == ['ok', 'ok'] and a[0]['run_id'] == b[0]['run_id']
    keys = [k for k in a[0] if k.startswith(('val_', 'test_', 'classify_threshold', 'best_epoch', 'pool_sha256', 'split_sha256'))]
    assert len(keys) > 8 and {k: a[0][k] for k in keys} == {k: b[0][k] for k in keys}
    assert b[0]['run_isolated'] and not a[0]['run_isolated']
