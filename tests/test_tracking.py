"Issue 14: every run writes TensorBoard scalars under runs/<run_id>/tb; `tracking: mlflow` logs one MLflow run per run."
from pathlib import Path
import pytest
from mtlsyn.study import run_study, ResultsStore
from mtlsyn.callback.tracking import read_scalars

FAST = dict(name='tracked', benchmark='phantom', size=28, budget=8, benchmark_kwargs=dict(n_train=120, n_val=60, n_test=60),
            image_encoder='small-cnn', text_encoder=None, tasks=['classify'], epochs=2, bs=16, lr=0.003, seeds=[0],
            eval_every=3, grid={'weighting': ['equal', 'uncertainty']})

@pytest.fixture(scope='module')
def tracked(tmp_path_factory):
    pytest.importorskip('mlflow', reason="MLflow is not installed: pip install 'mtlsyn[mlflow]'")
    d = tmp_path_factory.mktemp('tracked'); uri = f"sqlite:///{d/'mlflow.db'}"
    recs = run_study(dict(FAST, tracking='mlflow', tracking_uri=uri), d/'out', threads=1, log=lambda *a: None)
    return d/'out', uri, recs

def test_event_files_list_every_run_with_its_scalars(tracked):
    out, _, recs = tracked
    assert len(recs) == 2 and all(r['status'] == 'ok' for r in recs)
    runs = sorted(p.parent.name for p in out.glob('runs/*/tb'))
    assert runs == sorted(r['run_id'] for r in recs)
    for rid in runs:
        sc = read_scalars(out/'runs'/rid/'tb')
        need = {'train_loss', 'valid_loss', 'lr_0', 'task_loss/classify', 'task_weight/classify', 'eval/val_classify_auc',
                'eval/val_loss', 'mem/rss_peak_mb', 'thr/img_per_s'}
        assert need <= set(sc), sorted(need - set(sc))
        evals = [s for s, _ in sc['eval/val_classify_auc']]
        assert len(evals) > 2 and evals == sorted(evals)   # every eval_every evaluation and each epoch end

def test_mlflow_has_one_run_per_mtlsyn_run_with_its_metrics(tracked):
    import mlflow
    out, uri, recs = tracked
    c = mlflow.MlflowClient(uri)
    exp = c.get_experiment_by_name('tracked')
    runs = c.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(r['run_id'] for r in recs)
    for r in runs:
        rec = next(x for x in recs if x['run_id'] == r.info.run_name)
        assert r.data.metrics['val_classify_auc'] == pytest.approx(rec['val_classify_auc'])
        assert r.data.params['cfg_setting'] == rec['cfg_setting'] and r.info.status == 'FINISHED'
        assert len(c.get_metric_history(r.info.run_id, 'curve/val_classify_auc')) > 2
