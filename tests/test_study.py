"The study runner end to end, as a user runs it: the CLI, resuming, bad input, sharding and the report"
import json, os, subprocess, sys
from pathlib import Path
import pytest, yaml

BIN = Path(sys.executable).parent
REQUIRED = ['run_id', 'status', 'seed', 'cfg_tasks', 'split_sha256', 'val_classify_auc', 'test_classify_auc',
            'conv_classify_epoch_to_target', 'conv_classify_aulc', 'best_epoch', 'mem_peak_rss_mb', 'mem_params_mb',
            'thr_img_per_s', 'time_fit_s', 'env_torch', 'env_device', 'env_cpu', 'git_rev']

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
    r = _cli(cfg, '--out', d/'out')
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
        assert (d/'out'/'runs'/rec['run_id']/'curves.json').exists()
        assert (d/'out'/'runs'/rec['run_id']/'split.json').exists()
    assert {x['cfg_tasks'] for x in recs} == {'classify', 'classify+contrastive'}
    assert recs[0]['split_sha256'] == recs[1]['split_sha256'], 'same seed and budget must give the same images'
    assert 'val_contrastive_r1' in recs[1] and 'val_contrastive_r1' not in recs[0], 'the multi-task run records its contrastive metric'
    curves = json.loads((d/'out'/'runs'/recs[0]['run_id']/'curves.json').read_text())
    assert set(curves) == {'names', 'values'} and 'classify_auc' in curves['names']
    assert 'val_classify_auc' in r.stdout and 'tasks=classify+contrastive' in r.stdout

def test_rerun_skips_recorded_runs(tiny_study):
    d, cfg, _ = tiny_study
    r = _cli(cfg, '--out', d/'out')
    assert r.returncode == 0, r.stderr[-2000:]
    assert '2 of 2 runs already' in r.stdout
    assert len(_records(d/'out'/'results.jsonl')) == 2

def test_report_from_the_study_folder(tiny_study):
    d, _, _ = tiny_study
    r = subprocess.run([str(BIN/'mtlsyn-report'), str(d/'out')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    md = (d/'out'/'report.md').read_text()
    assert 'Paired differences' in md and (d/'out'/'curves.png').stat().st_size > 1000

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
    calls = []
    def fake_run_one(run, out, device=None, quiet=True):
        calls.append(run.run_id)
        if len(calls) == 1: raise RuntimeError('out of memory')
        return dict(run_id=run.run_id, status='ok', seed=run.seed, cfg_setting=run.setting)
    monkeypatch.setattr(study, 'run_one', fake_run_one)
    cfg = dict(TINY, seeds=[0, 1])
    recs = study.run_study(cfg, tmp_path, log=lambda *a: None)
    assert [r['status'] for r in recs].count('failed') == 1 and 'out of memory' in [r for r in recs if r['status']=='failed'][0]['error']
    recs = study.run_study(cfg, tmp_path, log=lambda *a: None)
    assert len(calls) == 5, 'only the failed run is run again'
    assert sum(r['status'] == 'ok' for r in recs) == 4

def test_resume_after_a_crash_mid_write(tmp_path, monkeypatch):
    from mtlsyn import study
    monkeypatch.setattr(study, 'run_one', lambda run, out, **kw: dict(run_id=run.run_id, status='ok', seed=run.seed))
    study.run_study(dict(TINY, seeds=[0]), tmp_path, log=lambda *a: None)
    with open(tmp_path/'results.jsonl', 'a') as f: f.write('{"run_id": "x", "stat')
    recs = study.run_study(dict(TINY, seeds=[0, 1]), tmp_path, log=lambda *a: None)
    assert len(recs) == 4
    assert all(json.loads(l) for l in (tmp_path/'results.jsonl').read_text().splitlines())

def test_shards_partition_the_runs_and_the_report_merges_them(tmp_path, monkeypatch):
    from mtlsyn import study, report
    monkeypatch.setattr(study, 'run_one', lambda run, out, **kw: dict(run_id=run.run_id, status='ok', seed=run.seed,
                                                                     cfg_setting=run.setting, val_classify_auc=0.5))
    cfg = dict(TINY, seeds=[0, 1, 2])
    a = study.run_study(cfg, tmp_path, shard='0/2', log=lambda *a: None)
    b = study.run_study(cfg, tmp_path, shard='1/2', log=lambda *a: None)
    assert len(a) + len(b) == 6 and not ({r['run_id'] for r in a} & {r['run_id'] for r in b})
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
    calls = []
    monkeypatch.setattr(study, 'run_one', lambda run, out, **kw: calls.append(run.run_id))
    with pytest.raises(study.MtlsynError) as e: study.run_study(_typo_study(field, good, bad), tmp_path/'out', log=lambda *a: None)
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
