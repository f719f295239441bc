"The study runner end to end, as a user runs it: the CLI, resuming, bad input, sharding and the report"
import json, os, subprocess, sys
from pathlib import Path
import pytest, yaml
from mtlsyn.core import MtlsynError

BIN = Path(sys.executable).parent
REQUIRED = ['run_id', 'status', 'seed', 'cfg_tasks', 'split_sha256', 'val_classify_auc', 'test_classify_auc',
            'conv_classify_epoch_to_target', 'conv_classify_aulc', 'best_epoch', 'mem_peak_rss_mb', 'mem_params_mb',
            'thr_img_per_s', 'time_fit_s', 'env_torch', 'env_device', 'env_cpu', 'git_rev',
            'cfg_setting', 'mem_base_rss_mb', 'mem_fit_rss_delta_mb', 'mem_frozen_mb', 'time_fit_cpu_s', 'env_threads',
            'env_load_start', 'env_load_end', 'val_classify_bacc', 'val_classify_ece', 'test_classify_acc', 'text_captions',
            'cost_prompt_encoding_seconds', 'cost_generator_fit_seconds', 'cost_pool_sampling_seconds', 'time_startup_s',
            'time_data_s', 'time_model_s', 'time_train_s', 'time_eval_s', 'time_write_s', 'time_other_s', 'time_run_s']

TINY = dict(name='tiny', benchmark='phantom', size=28, budget=8,
            benchmark_kwargs=dict(n_train=120, n_val=60, n_test=60),
            image_encoder='small-cnn', text_encoder='minilm', epochs=2, bs=16, lr=0.003, seeds=[0],
            grid=dict(tasks=[['classify'], ['classify', 'contrastive']]))

def _cli(*args, cwd=None):
    return subprocess.run([str(BIN/'mtlsyn-study'), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)

def _records(p): return [json.loads(l) for l in Path(p).read_text().splitlines() if l.strip()]

@pytest.fixture(scope='module')
def tiny_study(tmp_path_factory):
    d = tmp_path_factory.mktemp('study')
    cfg = d/'tiny.yaml'; cfg.write_text(yaml.safe_dump(TINY))
    r = _cli(cfg, '--out', d/'out', '--threads', 1)
    return d, cfg, r

def test_cli_writes_one_flat_record_per_run_and_prints_the_table(tiny_study):
    d, cfg, r = tiny_study
    assert r.returncode == 0, r.stderr[-3000:]
    recs = _records(d/'out'/'results.jsonl')
    assert len(recs) == 2 and {x['status'] for x in recs} == {'ok'}
    for rec in recs:
        missing = [k for k in REQUIRED if k not in rec]
        assert not missing, f'record lacks {missing}'
        assert all(not isinstance(v, (dict, list)) for v in rec.values()), 'records must be flat'
        assert 0 <= rec['val_classify_auc'] <= 1 and rec['mem_peak_rss_mb'] > 0 and rec['time_fit_s'] > 0
        assert rec['run_isolated'] is True, 'the CLI trains each run in its own process'
        phases = [rec[f'time_{p}_s'] for p in ('data', 'model', 'train', 'eval', 'write', 'other')]
        assert min(phases) >= 0 and abs(sum(phases) - rec['time_run_s']) < 1e-6, 'the phases split the run\'s wall time'
        assert (d/'out'/'runs'/rec['run_id']/'curves.json').exists()
        assert (d/'out'/'runs'/rec['run_id']/'split.json').exists()
    assert {x['cfg_tasks'] for x in recs} == {'classify', 'classify+contrastive'}
    assert recs[0]['split_sha256'] == recs[1]['split_sha256'], 'same seed and budget must give the same images'
    assert 'val_contrastive_r1' in recs[1] and 'val_contrastive_r1' not in recs[0], 'the multi-task run records its contrastive metric'
    assert {x['env_threads'] for x in recs} == {1}, '--threads reaches every run process'
    assert recs[1]['cost_prompt_encoding_seconds'] > 0 and recs[0]['cost_generator_fit_seconds'] == 0
    curves = json.loads((d/'out'/'runs'/recs[0]['run_id']/'curves.json').read_text())
    assert {'names', 'values', 'evals'} <= set(curves) and 'classify_auc' in curves['names']
    assert 'val_classify_auc' in r.stdout and 'tasks=classify+contrastive' in r.stdout
    lines = r.stdout.strip().splitlines()
    assert sum(l.startswith('[') and ': ok in' in l for l in lines) == 2, 'one line per finished run'
    assert lines[-1] == str(d/'out'/'report'/'report.md') and Path(lines[-1]).exists(), 'the last line is the report'

def test_rerun_skips_recorded_runs(tiny_study):
    d, cfg, _ = tiny_study
    r = _cli(cfg, '--out', d/'out', '--resume', '--threads', 2)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '2 of 2 runs already' in r.stdout, 'changing --threads reruns nothing'
    assert len(_records(d/'out'/'results.jsonl')) == 2

def test_report_from_the_study_folder(tiny_study):
    d, _, _ = tiny_study
    r = subprocess.run([str(BIN/'mtlsyn-report'), str(d/'out')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (d/'out'/'report'/'report.md').read_text().count('## ') >= 4

@pytest.mark.parametrize('text,msg', [
    ('epochz: 3\n', "unknown key 'epochz'"),
    ('grid: {tasks: classify}\n', 'needs a non-empty list'),
    ('weighting: nope\n', "unknown weighting 'nope'"),
    ('image_encoder: nope\n', "unknown image encoder 'nope'"),
    ('seeds: [a]\n', 'must be a list of integers'),
])
def test_bad_config_is_one_line_error_and_writes_nothing(tmp_path, text, msg):
    cfg = tmp_path/'bad.yaml'; cfg.write_text(text)
    r = _cli(cfg, '--out', tmp_path/'out')
    assert r.returncode != 0
    assert msg in r.stderr and 'Traceback' not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path/'out').exists()

def test_missing_config_file(tmp_path):
    r = _cli(tmp_path/'none.yaml')
    assert r.returncode != 0 and 'does not exist' in r.stderr and 'Traceback' not in r.stderr

def test_failed_run_is_recorded_and_retried(tmp_path, monkeypatch):
    from mtlsyn import study
    from mtlsyn.study import runner
    calls = []
    def fake_run_one(run, out, device=None, quiet=True):
        calls.append(run.run_id)
        if len(calls) == 1: raise RuntimeError('out of memory')
        return dict(run_id=run.run_id, status='ok', seed=run.seed, cfg_setting=run.setting)
    monkeypatch.setattr(runner, 'run_one', fake_run_one)
    cfg = dict(TINY, seeds=[0, 1])
    recs = study.run_study(cfg, tmp_path, log=lambda *a: None)
    assert [r['status'] for r in recs].count('failed') == 1 and 'out of memory' in [r for r in recs if r['status']=='failed'][0]['error']
    recs = study.run_study(cfg, tmp_path, log=lambda *a: None)
    assert len(calls) == 5, 'only the failed run is run again'
    assert sum(r['status'] == 'ok' for r in recs) == 4

def test_resume_after_a_crash_mid_write(tmp_path, monkeypatch):
    from mtlsyn import study
    from mtlsyn.study import runner
    monkeypatch.setattr(runner, 'run_one', lambda run, out, **kw: dict(run_id=run.run_id, status='ok', seed=run.seed))
    study.run_study(dict(TINY, seeds=[0]), tmp_path, log=lambda *a: None)
    with open(tmp_path/'results.jsonl', 'a') as f: f.write('{"run_id": "x", "stat')
    recs = study.run_study(dict(TINY, seeds=[0, 1]), tmp_path, log=lambda *a: None)
    assert len(recs) == 4
    assert all(json.loads(l) for l in (tmp_path/'results.jsonl').read_text().splitlines())

def test_shards_partition_the_runs_and_the_report_merges_them(tmp_path, monkeypatch):
    from mtlsyn import study, report
    from mtlsyn.study import runner
    monkeypatch.setattr(runner, 'run_one', lambda run, out, **kw: dict(run_id=run.run_id, status='ok', seed=run.seed,
                                                                     cfg_setting=run.setting, val_classify_auc=0.5))
    cfg = dict(TINY, seeds=[0, 1, 2])
    a = study.run_study(cfg, tmp_path, shard='0/2', log=lambda *a: None)
    b = study.run_study(cfg, tmp_path, shard='1/2', log=lambda *a: None)
    assert len(a) + len(b) == 6 and not ({r['run_id'] for r in a} & {r['run_id'] for r in b})
    assert {r['seed'] for r in a} == {0, 2} and {r['seed'] for r in b} == {1}, 'a shard runs whole seeds'
    assert len(study.run_study(cfg, tmp_path, log=lambda *a: None)) == 6, 'an unsharded resume sees the shards\' records'
    assert sorted(p.name for p in tmp_path.glob('results*.jsonl')) == ['results-0of2.jsonl', 'results-1of2.jsonl']
    assert len(report.load_results(tmp_path)) == 6
    with pytest.raises(Exception, match='not of the form'): study.parse_shard('2')

def test_a_study_on_real_medmnist_with_a_synthetic_pool(tmp_path, medmnist_root):
    "BreastMNIST at 5 images per class with a 1:1 mixup pool, through the CLI, records the pool and the real split"
    cfg = tmp_path/'breast.yaml'
    cfg.write_text(yaml.safe_dump(dict(name='breast', benchmark='breastmnist', budget=5, root=str(medmnist_root),
                                       epochs=1, bs=8, seeds=[0], tasks=['classify', 'contrastive'],
                                       grid={'generator,ratio': [['none', 0], ['mixup', 1]]})))
    r = _cli(cfg, '--out', tmp_path/'out')
    assert r.returncode == 0, r.stderr[-3000:]
    recs = _records(tmp_path/'out'/'results.jsonl')
    assert [x['status'] for x in recs] == ['ok', 'ok']
    base, mix = recs
    assert base['pool_sha256'] is None and mix['pool_sha256'] and mix['n_synthetic'] == 10
    assert base['split_sha256'] == mix['split_sha256'] and base['n_labeled'] == 10
    split = json.loads((tmp_path/'out'/'runs'/base['run_id']/'split.json').read_text())
    assert split['dataset'] == 'breastmnist' and split['source_md5'] == '750601b1f35ba3300ea97c75c52ff8f6'

def test_joint_grid_keys_sweep_fields_together():
    from mtlsyn.study import load_study, study_runs
    runs = study_runs(load_study(dict(grid={'generator,ratio': [['none', 0], ['mixup', 3]]}, seeds=[0, 1])))
    assert [(r.generator, r.ratio) for r in runs] == [('none', 0), ('none', 0), ('mixup', 3), ('mixup', 3)]

# Every name a study uses, misspelt in the last grid cell: (field, a valid value, the typo, what the error calls the field)
TYPOS = [('benchmark', 'phantom', 'phantomm', 'benchmark'), ('image_encoder', 'small-cnn', 'small-cnnn', 'image encoder'),
         ('text_encoder', 'minilm', 'minilmm', 'text encoder'), ('tasks', ['classify'], ['classify', 'contrastiv'], 'task'),
         ('sharing', 'parallel', 'paralel', 'sharing'), ('weighting', 'equal', 'equall', 'weighting'),
         ('generator', 'none', 'mixupp', 'generator'), ('precision', 'fp32', 'fp23', 'precision'),
         ('schedule', 'mixed', 'mixd', 'schedule'), ('text_mode', 'frozen', 'frozn', 'text mode'), ('opt', 'adam', 'adamm', 'optimizer')]

def _typo_study(field, good, bad): return dict(TINY, grid={field: [good, bad]}, seeds=[0])

def _expected(field, bad, kind):
    from mtlsyn.study import study_choices
    typo = bad[-1] if isinstance(bad, list) else bad
    return f"unknown {kind} {typo!r} ({field}): choose one of {', '.join(study_choices()[field])}"

@pytest.mark.parametrize('field,good,bad,kind', TYPOS, ids=[t[0] for t in TYPOS])
def test_a_misspelt_name_fails_before_the_first_run_with_the_valid_names(tmp_path, monkeypatch, field, good, bad, kind):
    from mtlsyn import study
    from mtlsyn.study import runner
    calls = []
    monkeypatch.setattr(runner, 'run_one', lambda run, out, **kw: calls.append(run.run_id))
    with pytest.raises(MtlsynError) as e: study.run_study(_typo_study(field, good, bad), tmp_path/'out', log=lambda *a: None)
    assert str(e.value) == _expected(field, bad, kind)
    assert calls == [] and not (tmp_path/'out').exists()

@pytest.mark.parametrize('field,good,bad,kind', TYPOS, ids=[t[0] for t in TYPOS])
def test_a_misspelt_name_fails_the_dry_run(tmp_path, monkeypatch, capsys, field, good, bad, kind):
    import runpy
    cfg = tmp_path/'typo.yaml'; cfg.write_text(yaml.safe_dump(_typo_study(field, good, bad)))
    script = tmp_path/'mtlsyn-study'   # what the installed console script runs, here in this process (no torch re-import)
    script.write_text('import sys\nfrom mtlsyn.study.cli import mtlsyn_study\nsys.exit(mtlsyn_study())\n')
    monkeypatch.setattr(sys, 'argv', [str(script), str(cfg), '--dry-run'])
    with pytest.raises(SystemExit) as e: runpy.run_path(str(script), run_name='__main__')
    out, err = capsys.readouterr()
    assert e.value.code == 2 and out == ''
    assert err == f"error: {_expected(field, bad, kind)}\n"

def test_dry_run_lists_the_runs_of_a_valid_study(tmp_path):
    cfg = tmp_path/'tiny.yaml'; cfg.write_text(yaml.safe_dump(TINY))
    r = _cli(cfg, '--dry-run', '--out', tmp_path/'out')
    assert r.returncode == 0, r.stderr[-2000:]
    assert [l.split()[1] for l in r.stdout.splitlines()] == ['tasks=classify', 'tasks=classify+contrastive']
    assert not (tmp_path/'out').exists()

def test_run_ids_of_the_quick_study_are_stable_and_opt_is_hashed_only_off_its_default():
    from mtlsyn.study import load_study, study_runs
    root = Path(__file__).resolve().parents[1]
    runs = study_runs(load_study(root/'studies'/'quick.yaml'))
    assert [r.run_id for r in runs[:3]] == ['32a6d7f96685', '2c04a06e306c', '67c85a4702da'], 'published run ids must not change'
    assert {r.opt for r in runs} == {'adam'}
    sgd = study_runs(load_study(dict(yaml.safe_load((root/'studies'/'quick.yaml').read_text()), opt='sgd')))
    assert sgd[0].run_id != runs[0].run_id and sgd[0].setting == runs[0].setting

def test_the_study_opt_reaches_the_optimizer():
    import torch
    from mtlsyn.study import load_study, study_runs, build_run
    run = study_runs(load_study(dict(TINY, grid={}, tasks=['classify'], opt='sgd')))[0]
    learn = build_run(run).learn
    learn.create_opt()
    assert isinstance(learn.opt.opt, torch.optim.SGD)

# Issue 10/11: execution order, threads, imports, failures and faults. FAST: classify only, no text encoder, tiny phantoms.
FAST = dict(name='fast', benchmark='phantom', size=28, budget=8, benchmark_kwargs=dict(n_train=120, n_val=60, n_test=60),
            image_encoder='small-cnn', text_encoder=None, tasks=['classify'], epochs=1, bs=16, lr=0.003, seeds=[0, 1])

def _fake_ok(calls=None):
    def f(run, out, **kw):
        if calls is not None: calls.append((run.seed, run.setting))
        return dict(run_id=run.run_id, status='ok', seed=run.seed, cfg_setting=run.setting)
    return f

def test_runs_execute_seed_major_alternating_settings_within_a_seed(tmp_path, monkeypatch):
    from mtlsyn.study import runner, run_study
    calls = []
    monkeypatch.setattr(runner, 'run_one', _fake_ok(calls))
    run_study(dict(FAST, seeds=[0, 1, 2], grid={'weighting': ['equal', 'uncertainty']}), tmp_path, log=lambda *a: None)
    assert [s for s, _ in calls] == [0, 0, 1, 1, 2, 2]
    assert [w for _, w in calls] == ['weighting=equal', 'weighting=uncertainty'] * 3

def test_threads_and_imports_leave_every_run_id_unchanged(monkeypatch):
    from mtlsyn.study import load_study, study_runs
    ids = lambda **kw: [r.run_id for r in study_runs(load_study(dict(FAST, grid={'weighting': ['equal', 'uncertainty']}, **kw)))]
    assert ids() == ids(threads=1) == ids(threads=3) == ids(imports=['json'])

def test_threads_reach_the_run_in_process(tmp_path, monkeypatch):
    import torch
    from mtlsyn.study import runner, run_study
    seen = []
    def f(run, out, **kw):
        seen.append(torch.get_num_threads()); return _fake_ok()(run, out)
    monkeypatch.setattr(runner, 'run_one', f)
    before = torch.get_num_threads()
    run_study(dict(FAST, threads=1), tmp_path, log=lambda *a: None)
    assert seen == [1, 1] and torch.get_num_threads() == before

LAB = '''
import mtlsyn.study.runner as runner
from mtlsyn.mtl.weighting import weightings, Equal
@weightings.register(name='lab-equal')
class LabEqual(Equal): "A weighting registered by a user's module"
_build = runner.build_run
def _oom_on_seed_1(run, device=None):
    if run.seed == 1: raise MemoryError('simulated: cannot allocate 64.0 GiB')
    return _build(run, device=device)
runner.build_run = _oom_on_seed_1   # a test-only fault hook, imported in every run process through `imports:`
'''

@pytest.fixture(scope='module')
def lab_study(tmp_path_factory):
    "A study whose weighting is registered by a user's module (`imports:`), run isolated; seed 1 simulates an out-of-memory error"
    import sys
    from mtlsyn.study import run_study
    from mtlsyn.study import runner
    d = tmp_path_factory.mktemp('lab'); (d/'my_lab_hook.py').write_text(LAB)
    sys.path.insert(0, str(d))
    build = runner.build_run
    try: recs = run_study(dict(FAST, weighting='lab-equal', imports=['my_lab_hook']), d/'out', isolate=True, log=lambda *a: None)
    finally: sys.path.remove(str(d)); runner.build_run = build; sys.modules.pop('my_lab_hook', None)
    return recs

def test_a_weighting_registered_through_imports_works_under_isolation(lab_study):
    ok = [r for r in lab_study if r['seed'] == 0][0]
    assert ok['status'] == 'ok', ok.get('error')
    assert ok['run_isolated'] is True and ok['cfg_weighting'] == 'lab-equal' and 'cfg_imports' not in ok

def test_a_simulated_out_of_memory_is_a_failed_run_with_its_reason_and_the_study_goes_on(lab_study, tmp_path, monkeypatch):
    oom = [r for r in lab_study if r['seed'] == 1][0]
    assert oom['status'] == 'failed' and oom['error'] == 'MemoryError: simulated: cannot allocate 64.0 GiB'
    import torch
    from mtlsyn.study import runner, run_study
    def f(run, out, **kw):   # in process too, with torch's own error type
        if run.seed == 0: raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')
        return _fake_ok()(run, out)
    monkeypatch.setattr(runner, 'run_one', f)
    recs = run_study(FAST, tmp_path, log=lambda *a: None)
    assert [r['status'] for r in recs] == ['failed', 'ok']
    assert recs[0]['error'] == 'OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB'

def test_the_full_reason_of_a_fastai_wrapped_error_is_recorded():
    from fastcore.xtras import modify_exception
    from mtlsyn.study import failure_reason
    e = modify_exception(ValueError('Input contains NaN.\nSecond line of the reason'),
                         'Exception occured in `AutocastCallback` when calling event `after_pred`:\n\tInput contains NaN.\nSecond line of the reason', replace=True)
    assert failure_reason(e) == ('failed', 'ValueError: Input contains NaN. Second line of the reason')

def test_a_diverging_lr_is_recorded_diverged_and_the_study_goes_on(tmp_path):
    cfg = tmp_path/'div.yaml'; cfg.write_text(yaml.safe_dump(dict(FAST, seeds=[0], epochs=2, grid={'lr': [0.003, 1e30]})))
    r = _cli(cfg, '--out', tmp_path/'out', '--in-process')
    assert r.returncode == 1, r.stderr[-3000:]
    recs = _records(tmp_path/'out'/'results.jsonl')
    assert [x['status'] for x in recs] == ['ok', 'diverged']
    assert 'nan' in recs[1]['error'] and recs[1]['error'].startswith('RunDiverged') and 'Exception occured' not in recs[1]['error']

def test_a_failed_run_that_later_succeeds_is_not_failed_forever(tmp_path, monkeypatch, capsys):
    import runpy
    from mtlsyn.study import runner
    calls = []
    def f(run, out, **kw):
        calls.append(run.run_id)
        if len(calls) == 1: raise RuntimeError('flaky')
        return _fake_ok()(run, out)
    monkeypatch.setattr(runner, 'run_one', f)
    cfg = tmp_path/'s.yaml'; cfg.write_text(yaml.safe_dump(FAST))
    script = tmp_path/'mtlsyn-study'
    script.write_text('import sys\nfrom mtlsyn.study.cli import mtlsyn_study\nsys.exit(mtlsyn_study())\n')
    codes = []
    for _ in range(3):
        monkeypatch.setattr(sys, 'argv', [str(script), str(cfg), '--out', str(tmp_path/'out'), '--in-process'])
        with pytest.raises(SystemExit) as e: runpy.run_path(str(script), run_name='__main__')
        codes.append(e.value.code or 0)
    assert codes == [1, 0, 0] and len(calls) == 3, 'only the failed run is retried, then the study is ok'

@pytest.mark.parametrize('case', ['out_is_a_file', 'out_unwritable', 'config_is_a_folder', 'cache_is_a_file'])
def test_path_mistakes_are_one_line_errors(tmp_path, monkeypatch, capsys, case):
    import runpy
    cfg = tmp_path/'s.yaml'; cfg.write_text(yaml.safe_dump(FAST)); out = tmp_path/'out'
    if case == 'out_is_a_file': out.write_text('x')
    if case == 'out_unwritable':
        import mtlsyn.study.cli as cli
        ro = tmp_path/'ro'; ro.mkdir(); out = ro/'out'
        monkeypatch.setattr(cli.os, 'access', lambda p, mode: Path(p) != ro)   # also as root, who may write anywhere
    if case == 'config_is_a_folder': cfg = tmp_path
    if case == 'cache_is_a_file': (tmp_path/'cache').write_text('x'); monkeypatch.setenv('MTLSYN_CACHE', str(tmp_path/'cache'))
    script = tmp_path/'mtlsyn-study'
    script.write_text('import sys\nfrom mtlsyn.study.cli import mtlsyn_study\nsys.exit(mtlsyn_study())\n')
    monkeypatch.setattr(sys, 'argv', [str(script), str(cfg), '--out', str(out)])
    with pytest.raises(SystemExit) as e: runpy.run_path(str(script), run_name='__main__')
    _, err = capsys.readouterr()
    assert e.value.code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err

def test_a_closed_output_pipe_is_a_one_line_error(tmp_path):
    cfg = tmp_path/'s.yaml'; cfg.write_text(yaml.safe_dump(dict(FAST, seeds=list(range(200)))))
    p = subprocess.Popen([str(BIN/'mtlsyn-study'), str(cfg), '--dry-run'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read(); p.wait(timeout=300)
    assert p.returncode == 2 and err.startswith('error: the output pipe was closed') and len(err.strip().splitlines()) == 1, err

SLOW = '''
import os, time
from mtlsyn.study.runner import BuiltRun
_fit = BuiltRun.fit
def fit(self, quiet=True):
    if os.environ.get('SLOW_HOOK_SLEEP'): time.sleep(600)   # a test-only hook: the run is still training when it is killed
    return _fit(self, quiet)
BuiltRun.fit = fit
'''

def test_kill_9_during_a_run_then_resume_gives_exactly_one_ok_record_per_run(tmp_path):
    import signal, time, psutil
    (tmp_path/'slow_hook.py').write_text(SLOW)
    cfg = tmp_path/'s.yaml'; cfg.write_text(yaml.safe_dump(dict(FAST, imports=['slow_hook'])))
    p = subprocess.Popen([str(BIN/'mtlsyn-study'), str(cfg), '--out', str(tmp_path/'out')], cwd=tmp_path,
                         env={**os.environ, 'SLOW_HOOK_SLEEP': '1'}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(2400):   # until the first run is built and training
        if list((tmp_path/'out'/'runs').glob('*/split.json')) or p.poll() is not None: break
        time.sleep(0.25)
    assert p.poll() is None, 'the study ended before it could be killed'
    kids = psutil.Process(p.pid).children(recursive=True)
    assert kids, 'the run trains in its own process'
    os.kill(p.pid, signal.SIGKILL); p.wait()
    _, alive = psutil.wait_procs(kids, timeout=60)
    assert not alive, 'run processes end when their driver dies'
    r = _cli(cfg, '--out', tmp_path/'out', '--resume', '--in-process', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = _records(tmp_path/'out'/'results.jsonl')
    assert sorted(x['seed'] for x in recs if x['status'] == 'ok') == [0, 1] and len(recs) == 2
