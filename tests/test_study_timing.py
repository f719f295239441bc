"Each run record splits the run's wall time into phases (start-up, data, model, training, evaluation, writing) that sum to `time_run_s`"
from pathlib import Path
from mtlsyn.study.config import load_study, study_runs
from mtlsyn.study.runner import PHASES, run_study, _preload

TINY = dict(name='tiny-timing', benchmark='phantom', size=28, budget=8, benchmark_kwargs=dict(n_train=120, n_val=60, n_test=60),
            image_encoder='small-cnn', text_encoder='learned', epochs=2, bs=16, lr=0.003, seeds=[0],
            grid=dict(tasks=[['classify'], ['classify', 'contrastive']]))
KEYS = ['time_startup_s', *[f'time_{p}_s' for p in PHASES], 'time_other_s']

def test_phases_sum_to_the_run_wall_time(tmp_path):
    recs = run_study(TINY, tmp_path/'out', threads=1, log=lambda *a: None)   # in-process: seconds
    assert [r['status'] for r in recs] == ['ok', 'ok']
    for r in recs:
        missing = [k for k in KEYS if k not in r]
        assert not missing, f'record lacks {missing}'
        assert all(r[k] >= 0 for k in KEYS), {k: r[k] for k in KEYS}
        assert all(r[f'time_{p}_s'] > 0 for p in PHASES), 'every phase takes some time'
        assert abs(sum(r[f'time_{p}_s'] for p in PHASES) + r['time_other_s'] - r['time_run_s']) < 1e-6
        assert r['time_other_s'] < 0.25*r['time_run_s'], f"a large residual: {r['time_other_s']:.2f} of {r['time_run_s']:.2f} s"
        assert r['time_train_s'] < r['time_fit_s'], 'training steps are part of the fit'
        assert r['time_startup_s'] < 1, 'an in-process run starts at once'

def test_the_forkserver_preloads_what_runs_import_on_first_use():
    quick = _preload(study_runs(load_study(Path(__file__).parent.parent/'studies'/'quick.yaml')))
    assert quick[:2] == ['mtlsyn', 'mtlsyn.study.runner'] and 'torch._dynamo' in quick
    assert any(m.startswith('transformers') for m in quick), 'quick embeds reports with MiniLM'
    image_only = _preload(study_runs(load_study(dict(tasks=['classify'], image_encoder='resnet18-28', text_encoder='minilm'))))
    assert 'torchvision' in image_only and not any(m.startswith('transformers') for m in image_only), 'no task embeds text: no transformers'
