"Issue 14: studies on Ray. Ray starts once for this module (embedded, 2 CPUs, loopback)."
import os, signal, sys, threading, time
from pathlib import Path
import pytest, yaml

ray = pytest.importorskip('ray', reason="Ray is not installed: pip install 'mtlsyn[ray]'")
from mtlsyn.study import load_study, study_runs, run_study, ResultsStore
from mtlsyn.study.ray import ray_connect, ray_study, ray_options

FAST = dict(name='fast', benchmark='phantom', size=28, budget=8, benchmark_kwargs=dict(n_train=120, n_val=60, n_test=60),
            image_encoder='small-cnn', text_encoder=None, tasks=['classify'], epochs=1, bs=16, lr=0.003, seeds=[0],
            grid={'weighting': ['equal', 'uncertainty']})

# Imported in every run (the study's `imports:`): in a folder holding `kill-first`, the first run to get here
# writes its worker's pid to `victim.pid` and waits to be killed; every other run (and every retry) trains.
HOOK = '''
import os, time
from pathlib import Path
import mtlsyn.study.runner as R
_run_one = R.run_one
def run_one(run, out, **kw):
    if (Path(out)/'kill-first').exists():
        try: fd = os.open(Path(out)/'victim.pid', os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError: pass
        else:
            os.write(fd, str(os.getpid()).encode()); os.close(fd)
            time.sleep(300)
    return _run_one(run, out, **kw)
R.run_one = run_one
'''

@pytest.fixture(scope='module')
def local_ray(tmp_path_factory):
    hooks = tmp_path_factory.mktemp('hooks'); (hooks/'ray_kill_hook.py').write_text(HOOK)
    old = os.environ.get('PYTHONPATH')
    os.environ['PYTHONPATH'] = os.pathsep.join([str(hooks)] + ([old] if old else []))   # Ray's workers inherit it
    os.environ.setdefault('OMP_NUM_THREADS', '1'); sys.path.insert(0, str(hooks))                  # and so does the driver
    t0 = time.time(); ray_connect(num_cpus=2); print(f"ray start-up: {time.time()-t0:.1f} s")
    yield ray
    ray.shutdown(); sys.path.remove(str(hooks))
    if old is None: os.environ.pop('PYTHONPATH', None)
    else: os.environ['PYTHONPATH'] = old

def _ok(p): return sorted(r['run_id'] for r in ResultsStore(p).records() if r.get('status') == 'ok')

def test_ray_options_default_one_cpu_and_a_gpu_where_there_is_one():
    assert ray_options() == dict(num_cpus=1, num_gpus=0)
    assert ray_options(has_gpu=True) == dict(num_cpus=1, num_gpus=1)
    assert ray_options(dict(num_cpus=1, num_gpus=0.5)) == dict(num_cpus=1, num_gpus=0.5)

def test_engine_and_resources_never_change_run_ids():
    ids = lambda **kw: [r.run_id for r in study_runs(load_study(dict(FAST, **kw)))]
    assert ids() == ids(engine='ray', resources=dict(num_cpus=1, num_gpus=0.5), tracking='mlflow', tracking_uri='sqlite:///x.db')

def test_a_killed_worker_is_recorded_failed_then_resume_gives_one_ok_record_per_run(local_ray, tmp_path):
    out = tmp_path/'ray'; out.mkdir(); (out/'kill-first').touch()
    study = dict(FAST, imports=['ray_kill_hook'])
    res = {}
    th = threading.Thread(target=lambda: res.update(recs=ray_study(study, out, max_retries=0, log=lambda *a: None)))
    th.start()
    pid_file = out/'victim.pid'
    while th.is_alive() and not (pid_file.exists() and pid_file.read_text()): time.sleep(0.1)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    th.join(240); assert not th.is_alive()
    recs = ResultsStore(out/'results.jsonl').records()
    assert len(recs) == 2 and sorted(r['status'] for r in recs) == ['failed', 'ok']
    failed = next(r for r in recs if r['status'] == 'failed')
    assert 'RunProcessDied' in failed['error'] and 'Ray worker' in failed['error'], failed['error']
    # resume: only the failed run runs again (the hook lets it train now), and nothing is duplicated
    (out/'kill-first').unlink()
    from mtlsyn.study.cli import mtlsyn_study   # the CLI, in this process: it reuses the Ray started above
    cfg = tmp_path/'fast.yaml'; cfg.write_text(yaml.safe_dump(study))
    mtlsyn_study(str(cfg), out=str(out), engine='ray', resume=True)
    recs = ResultsStore(out/'results.jsonl').records()
    ids = [r.run_id for r in study_runs(load_study(FAST))]
    assert len(recs) == 3 and _ok(out/'results.jsonl') == sorted(ids)
    ok = [r for r in recs if r['status'] == 'ok']
    assert all(r['run_engine'] == 'ray' and r['run_isolated'] and r['mem_peak_rss_mb'] > 0 for r in ok)
    # the plain runner records the same set of ok run ids
    run_study(FAST, tmp_path/'local', threads=1, log=lambda *a: None)
    assert _ok(tmp_path/'local'/'results.jsonl') == _ok(out/'results.jsonl')

def test_a_killed_worker_is_retried_into_one_ok_record(local_ray, tmp_path):
    out = tmp_path/'ray'; out.mkdir(); (out/'kill-first').touch()
    study = dict(FAST, imports=['ray_kill_hook'], grid={}, weighting='equal')
    th = threading.Thread(target=lambda: ray_study(study, out, max_retries=1, log=lambda *a: None)); th.start()
    pid_file = out/'victim.pid'
    while th.is_alive() and not (pid_file.exists() and pid_file.read_text()): time.sleep(0.1)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    th.join(240); assert not th.is_alive()
    recs = ResultsStore(out/'results.jsonl').records()
    assert [r['status'] for r in recs] == ['ok']
