"A profiler trace written by `ProfilerCallback` during the test is served by TensorBoard's profiler plugin on 127.0.0.1"
import json, os, re, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from mtlsyn.test_utils import tiny_learner
from mtlsyn.callback.profiler import ProfilerCallback

TB = Path(sys.executable).parent/'tensorboard'

def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r: return json.loads(r.read().decode())

def test_trace_files(tmp_path):
    "The schedule records the asked number of steps, with memory events, into one Chrome-trace JSON file"
    learn = tiny_learner()
    cb = ProfilerCallback(tmp_path, run_name='r', skip_first=1, wait=0, warmup=1, active=2, worker_name='w')
    with learn.no_logging(), learn.no_bar(): learn.fit(1, cbs=cb)
    assert len(cb.traces) == 1 and cb.traces[0].name.startswith('w.') and cb.traces[0].name.endswith('.pt.trace.json')
    ev = json.loads(cb.traces[0].read_text())['traceEvents']
    steps = {e['name'] for e in ev if str(e.get('name','')).startswith('ProfilerStep#')}
    assert steps == {'ProfilerStep#2', 'ProfilerStep#3'}
    assert any(e.get('name') == '[memory]' for e in ev)
    assert cb.record()['prof_traces'] == [str(cb.traces[0])]

@pytest.mark.skipif(not TB.exists(), reason='tensorboard is not installed in this environment (pip install tensorboard torch-tb-profiler)')
def test_tensorboard_serves_overview_and_memory(tmp_path):
    "TensorBoard, started here on loopback only, lists Overview and Memory among the plugin's views of the trace"
    pytest.importorskip('torch_tb_profiler')
    learn = tiny_learner()
    cb = ProfilerCallback(tmp_path/'logs', run_name='toyrun', worker_name='toy')
    with learn.no_logging(), learn.no_bar(): learn.fit(1, cbs=cb)
    assert cb.traces, 'no trace written'
    log = open(tmp_path/'tb.log', 'w+')
    proc = subprocess.Popen([str(TB), '--logdir', str(tmp_path/'logs'), '--host', '127.0.0.1', '--port', '0'],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
    try:
        url, t0 = None, time.time()
        while url is None and time.time()-t0 < 60:            # bounded wait for the server to say where it listens
            assert proc.poll() is None, f'tensorboard exited: {(tmp_path/"tb.log").read_text()[-2000:]}'
            m = re.search(r'http://127\.0\.0\.1:(\d+)/', (tmp_path/'tb.log').read_text())
            if m: url = f'http://127.0.0.1:{m.group(1)}'
            else: time.sleep(0.5)
        assert url, 'tensorboard did not report its address within 60 s'
        base = f'{url}/data/plugin/pytorch_profiler'
        runs, t0 = [], time.time()
        while time.time()-t0 < 60:                             # bounded wait for the plugin to load the run
            try: runs = _get(f'{base}/runs')['runs']
            except OSError: runs = []
            if 'toyrun' in runs: break
            time.sleep(0.5)
        assert 'toyrun' in runs, f'the plugin did not list the run within 60 s: {runs}'
        views = _get(f'{base}/views?run=toyrun')
        assert 'Overview' in views and 'Memory' in views, views
        assert _get(f'{base}/workers?run=toyrun&view=Overview') == ['toy']
    finally:
        proc.terminate()
        try: proc.wait(timeout=10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(timeout=10)
        log.close()
