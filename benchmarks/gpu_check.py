"""`make gpu-check`: mtlsyn's CUDA paths on one GPU, with a table of what passed and its figures.

Checks: fp16 autocast with a gradient scaler, bf16 autocast, CUDA memory peaks in the records, the profiler's
CUDA trace, a two-run study on `cuda`, Accelerate (`accelerate launch`, one process) around `distrib_ctx`, and
benchmark 1 (`overhead.py`, mtlsyn against a plain loop) on the GPU. Everything runs on the phantom benchmark
with text-free tasks (no MiniLM download), ResNet-18(28) or small-cnn, in a few minutes.

It runs on a bare `python3` that has torch, torchvision, numpy, pandas, scikit-learn, scipy, accelerate,
safetensors and timm but none of fastai's family: the Makefile target installs the wheels listed in
`benchmarks/gpu_wheels.txt` from `.whl/` into a temporary folder (see `make gpu-wheels`) and puts the
repository on `PYTHONPATH`. fastprogress imports `fasthtml` only for notebook bars: where it is absent, an
empty stand-in module is registered (console bars need none of it).

Without CUDA it stops at once with exit status 2 and says so.

    PYTHONPATH=. python3 benchmarks/gpu_check.py [--quick]
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile, time, traceback, warnings
from pathlib import Path
warnings.filterwarnings('ignore')
ROOT = Path(__file__).resolve().parent.parent
DEVICE = os.environ.get('GPU_CHECK_DEVICE', 'cuda')   # 'cpu' only to smoke-test the script's own code on a CPU
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

def _stub_fasthtml():
    """fastprogress imports `fasthtml.common` at import time, for notebook bars only: where it is missing, stand in an
    empty package, in this process and (through `PYTHONPATH`) in the subprocesses the checks start"""
    try: import fasthtml.common  # noqa: F401
    except ImportError:
        d = Path(tempfile.mkdtemp(prefix='mtlsyn-stub-')); (d/'fasthtml').mkdir()
        for f in ('__init__.py', 'common.py'): (d/'fasthtml'/f).write_text('"An empty stand-in: console bars need none of fasthtml"\n')
        sys.path.insert(0, str(d)); os.environ['PYTHONPATH'] = os.pathsep.join([str(d)] + [p for p in [os.environ.get('PYTHONPATH')] if p])

def _learner(precision:str, cbs=(), encoder:str='resnet18-28', n_train:int=256, bs:int=64):
    from fastai.torch_core import set_seed
    from mtlsyn.data.all import load_benchmark
    from mtlsyn.data.loaders import dataloaders
    from mtlsyn.model.vlm import build_vlm
    from mtlsyn.learner import mtl_learner
    set_seed(0)
    split = load_benchmark('phantom', size=28, n_train=n_train, n_val=128, n_test=64, budget='all')
    dls = dataloaders(split, bs=bs, seed=0, device=DEVICE)
    model = build_vlm(encoder, None, ('classify', 'segment'), info=split.info)
    return mtl_learner(dls, model, 'equal', precision=precision, cbs=list(cbs), select_best=False)

def check_fp16():
    from fastai.callback.core import Callback
    class ScaleLog(Callback):
        "The gradient scaler's scale after every step (fastai's MixedPrecision drops its scaler after fit)"
        order = 100
        def before_fit(self): self.scales = []
        def after_step(self): self.scales.append(float(self.learn.scaler.get_scale()))
    log = ScaleLog()
    learn = _learner('fp16', [log])
    with learn.no_logging(), learn.no_bar(): learn.fit(2)
    assert log.scales, 'no optimizer step ran under the gradient scaler'
    loss, scale = float(learn.recorder.values[-1][0]), log.scales[-1]
    assert loss == loss and scale > 0, f'train loss {loss}, scale {scale}'
    return f'train loss {loss:.3f}, grad scale {scale:.0f}, val {learn.monitor} {float(learn.recorder.values[-1][2]):.3f}'

def check_bf16():
    learn = _learner('bf16')
    with learn.no_logging(), learn.no_bar(): learn.fit(2)
    loss = float(learn.recorder.values[-1][0]); assert loss == loss, 'train loss is NaN'
    return f'train loss {loss:.3f}, val {learn.monitor} {float(learn.recorder.values[-1][2]):.3f}'

def check_memory():
    from mtlsyn.callback.memory import MemoryCallback
    mem = MemoryCallback()
    learn = _learner('bf16', [mem])
    with learn.no_logging(), learn.no_bar(): learn.fit(1)
    r = mem.record()
    assert r['mem_cuda_peak_alloc_mb'] and r['mem_cuda_peak_alloc_mb'] > 0, f"mem_cuda_peak_alloc_mb = {r['mem_cuda_peak_alloc_mb']}"
    return f"mem_cuda_peak_alloc_mb {r['mem_cuda_peak_alloc_mb']:.0f}, reserved {r['mem_cuda_peak_reserved_mb']:.0f}, activations {r['mem_activations_mb']:.0f} MiB"

def check_profiler():
    from mtlsyn.callback.profiler import ProfilerCallback
    with tempfile.TemporaryDirectory() as d:
        prof = ProfilerCallback(out_dir=d, skip_first=0, wait=0, warmup=1, active=2)
        learn = _learner('bf16', [prof], n_train=512)
        with learn.no_logging(), learn.no_bar(): learn.fit(1)
        assert prof.traces, 'no trace written'
        import gzip
        p = prof.traces[0]; raw = (gzip.open if p.suffix == '.gz' else open)(p, 'rt').read()
        ev = json.loads(raw).get('traceEvents', [])
        kernels = sum(1 for e in ev if e.get('cat') == 'kernel')
        assert kernels > 0, 'the trace holds no CUDA kernel events'
        return f'{len(prof.traces)} trace(s), {kernels} CUDA kernel events, {p.stat().st_size/2**20:.1f} MiB'

def check_study():
    from mtlsyn.study.runner import run_study
    cfg = dict(name='gpu-check', benchmark='phantom', size=28, budget=50, image_encoder='small-cnn', text_encoder=None,
               tasks=['classify'], epochs=2, bs=32, precision='bf16', seeds=[0, 1])
    with tempfile.TemporaryDirectory() as d:
        recs = run_study(cfg, d, device=DEVICE, quiet=True, isolate=False, log=lambda *a, **k: None)
    ok = [r for r in recs if r.get('status') == 'ok']
    assert len(ok) == 2, f"{len(ok)} of {len(recs)} runs ok: {[r.get('error') for r in recs if r.get('status') != 'ok']}"
    dev = {r.get('env_device') for r in ok}
    assert all(d and d != 'cpu' for d in dev) or DEVICE == 'cpu', f'runs recorded device {dev}'
    mem = [r.get('mem_cuda_peak_alloc_mb') for r in ok]
    return f"2 runs ok on {', '.join(map(str, sorted(dev)))}; mem_cuda_peak_alloc_mb {mem}"

ACCEL_CHILD = '--accelerate-child'
def _accelerate_child():
    from mtlsyn.learner import distrib_ctx
    learn = _learner('bf16')
    with learn.no_logging(), learn.no_bar():
        with distrib_ctx(learn): learn.fit(1)
    print('ACCEL ' + json.dumps(dict(device=str(next(learn.model.parameters()).device), loss=float(learn.recorder.values[-1][0]),
                                     world=int(os.environ.get('WORLD_SIZE', 1)))))

def check_accelerate():
    cmd = [sys.executable, '-m', 'accelerate.commands.launch', '--num_processes', '1', '--num_machines', '1', '--mixed_precision', 'no',
           '--dynamo_backend', 'no', __file__, ACCEL_CHILD]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    line = [l for l in p.stdout.splitlines() if l.startswith('ACCEL ')]
    assert p.returncode == 0 and line, f'accelerate launch exit {p.returncode}: {p.stderr[-800:]}'
    r = json.loads(line[-1][6:]); assert r['device'].startswith('cuda'), r
    return f"accelerate launch, 1 process: model on {r['device']}, train loss {r['loss']:.3f}"

def check_overhead(rounds:int):
    cmd = [sys.executable, str(ROOT/'benchmarks'/'overhead.py'), '--benchmark', 'phantom', '--rounds', str(rounds), '--no-write', '--threads', '4']
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=400)
    line = [l for l in p.stdout.splitlines() if l.startswith('overhead vs plain loop:')]
    assert p.returncode == 0 and line, f'exit {p.returncode}: {p.stderr[-800:]}'
    rows = [l for l in p.stdout.splitlines() if l.startswith('| bf16') or l.startswith('| fp32')]
    return line[-1] + ' | ' + ' ; '.join(rows)

def _overhead_rows(log:Path)->list[dict]:
    "The final table of a `benchmarks/gpu_overhead.py` log, as dicts"
    rows = [l.strip('|').split('|') for l in log.read_text().splitlines() if l.startswith('| ') and '×' in l]
    seen, out = set(), []
    for c in (list(map(str.strip, r)) for r in rows):
        key = (c[0], c[2])
        if key in seen: continue   # the log prints each row twice (as measured, then in the final table)
        seen.add(key); out.append(dict(bs=int(c[0]), variant=c[2], ms=float(c[3]), over=float(c[4]), ratio=float(c[5].rstrip('×'))))
    return out

def write_results(table:Path, overhead_log:Path|None=None):
    "Write the `gpu` section of benchmarks/RESULTS.md from a saved gpu-check table (and a gpu_overhead.py log): run here, after the GPU call"
    sys.path.insert(0, str(ROOT/'benchmarks'))
    from _common import write_section
    body = ['## GPU path', '', table.read_text().strip(), '',
            '`make gpu-check` ran on the lent machine\'s bare `python3` (its own torch, no pinned install), with the wheels of '
            '`benchmarks/gpu_wheels.txt` carried from `.whl/` (`make gpu-wheels`) and the repository on `PYTHONPATH`; phantoms, '
            'text-free tasks. Table saved as ' + f'`{table.relative_to(ROOT)}`.']
    if overhead_log is not None:
        rows = _overhead_rows(overhead_log)
        g = {(r['bs'], r['variant']): r for r in rows}
        body += ['', '### Why mtlsyn is slower than a plain loop on this GPU at batch 128', '',
                 f'`benchmarks/gpu_overhead.py` (log: `{overhead_log.relative_to(ROOT)}`) times a steady-state epoch of each variant, '
                 'alternating, on 4,096 phantom images, bf16:', '',
                 '| bs | variant | ms/step | overhead ms/step vs plain | epoch time / plain |', '|---|---|---|---|---|',
                 *[f"| {r['bs']} | {r['variant']} | {r['ms']:.2f} | {r['over']:+.2f} | {r['ratio']:.2f}× |" for r in rows], '']
        b = min(r['bs'] for r in rows); B = max(r['bs'] for r in rows)
        f = lambda bs, v: g.get((bs, v), {}).get
        body += [f"At batch {b} a plain step takes {f(b,'plain')('ms'):.1f} ms, so host work per step is what the ratio measures: fastai's own "
                 f"Learner adds {f(b,'fastai')('over'):+.1f} ms/step ({f(b,'fastai')('ratio'):.2f}×), mtlsyn without instruments "
                 f"{f(b,'mtlsyn, no instruments')('over'):+.1f} ms ({f(b,'mtlsyn, no instruments')('ratio'):.2f}×), and with all three instruments "
                 f"{f(b,'mtlsyn, all instruments')('over'):+.1f} ms ({f(b,'mtlsyn, all instruments')('ratio'):.2f}×). At batch {B} the plain loop's "
                 f"per-item `DataLoader` collation becomes its bottleneck and mtlsyn, which gathers whole batches by index, is "
                 f"{f(B,'mtlsyn, all instruments')('ratio'):.2f}× its time with all instruments on. So the GPU overhead is the training "
                 "loop's fixed per-step host cost (callbacks, dict batches), not the instruments alone; it vanishes on a CPU, where a step "
                 "takes ~0.5 s (overhead section: 1.00×), and shrinks with larger batches. The ≤ 1.03 goal is met on the CPU, not on this "
                 "GPU at batch 128; what would close it there: larger batches, CUDA graphs / `torch.compile` of the step, and fewer Python "
                 "callbacks per step (not attempted here).",
                 '', 'Command (on the GPU machine): `PYTHONPATH=. python3 benchmarks/gpu_overhead.py --bs 128 512 --rounds 3 --n-per-class 1024`; '
                 'then here `python benchmarks/gpu_check.py --write-results ' + f'{table.relative_to(ROOT)} --overhead-log {overhead_log.relative_to(ROOT)}`.']
    write_section('gpu', '\n'.join(body))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='one overhead round instead of three')
    ap.add_argument('--only', nargs='*', default=None, help='run only these checks')
    ap.add_argument('--out', default=None, help='also write the table as markdown to this file')
    ap.add_argument(ACCEL_CHILD, action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--write-results', default=None, metavar='TABLE', help='no check: write the gpu section of RESULTS.md from a saved table (run here)')
    ap.add_argument('--overhead-log', default=None, help='with --write-results: a benchmarks/gpu_overhead.py log to explain the overhead row')
    a = ap.parse_args()
    if a.write_results:
        write_results(Path(a.write_results).resolve(), Path(a.overhead_log).resolve() if a.overhead_log else None); return
    import torch
    if DEVICE == 'cuda' and not torch.cuda.is_available():
        print('gpu-check: FAILED: no CUDA device is visible to this python (torch.cuda.is_available() is False); '
              'run it on a machine with a GPU (see benchmarks/RESULTS.md, "GPU path").', file=sys.stderr)
        sys.exit(2)
    _stub_fasthtml()
    if a.accelerate_child: _accelerate_child(); return
    checks = dict(fp16_scaler=check_fp16, bf16=check_bf16, cuda_memory_records=check_memory, profiler_cuda_trace=check_profiler,
                  study_two_runs_cuda=check_study, accelerate_one_gpu=check_accelerate,
                  overhead_vs_plain_gpu=lambda: check_overhead(1 if a.quick else 3))
    gpu = torch.cuda.get_device_name() if DEVICE == 'cuda' else 'CPU (smoke test of the script, not a GPU check)'
    print(f'gpu-check on {gpu}, torch {torch.__version__}, python {sys.version.split()[0]}', flush=True)
    rows = []
    for name, fn in checks.items():
        if a.only and name not in a.only: continue
        t = time.time()
        try: status, fig = 'PASS', fn()
        except Exception as e:
            status, fig = 'FAIL', f'{type(e).__name__}: {e}'.replace('\n', ' ')[:400]; traceback.print_exc()
        rows.append(f'| {name} | {status} | {time.time()-t:.0f} s | {fig} |'); print(rows[-1], flush=True)
    table = '\n'.join([f'GPU path on {gpu} (torch {torch.__version__}), {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}:', '',
                       '| check | result | time | figures |', '|---|---|---|---|', *rows])
    print('\n' + table)
    if a.out: Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(table + '\n')
    sys.exit(0 if all('| PASS |' in r for r in rows) else 1)

if __name__ == '__main__': main()
