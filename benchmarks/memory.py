"""Peak training memory of multi-task training (2, 3, 4 tasks; equal, uncertainty, UPGrad, PCGrad, MGDA) against single-task.

ResNet-18(28) on the 28-px phantom benchmark (it has labels, lung/lesion masks and images to reconstruct), bs
`--bs`, `--steps` training steps, bf16, channels_last; tasks classify (1), + segment (2), + reconstruct (3),
+ denoise (4), none of which needs a text encoder. Each configuration runs in a fresh process, so its RSS is its
own. Figures per run: `mem_fit_rss_delta` = peak RSS during fit (VmHWM, reset before fit) minus RSS after the
model and optimiser are built (grads, optimiser state, activations, per-task gradients, allocator slack), and
the accounted sum params + grads + optimiser state + one step's saved activations from mtlsyn's `MemoryCallback`.
The ratios divide each by the single-task run's figure at the same batch size.

    OMP_NUM_THREADS=1 python benchmarks/memory.py [--bs 64] [--steps 2] [--no-write]
"""
from __future__ import annotations
import argparse, json, subprocess, sys, warnings
warnings.filterwarnings('ignore')
from _common import ROOT, threads_from_env, setup_threads, machine, today, write_section

TASKS = ['classify', 'segment', 'reconstruct', 'denoise']
WEIGHTINGS = ['equal', 'uncertainty', 'upgrad', 'pcgrad', 'mgda']
MB = 2**20

def rss_now()->int:
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS:'): return int(l.split()[1])*1024
    return 0

def one(n_tasks:int, weighting:str, bs:int, steps:int, precision:str)->dict:
    "Train `n_tasks` tasks with `weighting` for `steps` steps in this process; its memory figures"
    from fastai.torch_core import set_seed
    from mtlsyn.data.all import load_benchmark
    from mtlsyn.data.loaders import dataloaders
    from mtlsyn.model.vlm import build_vlm
    from mtlsyn.learner import mtl_learner
    from mtlsyn.callback.memory import MemoryCallback, reset_peak_rss, _vm_hwm
    set_seed(0)
    split = load_benchmark('phantom', size=28, n_train=bs*steps, n_val=bs, n_test=bs)
    dls = dataloaders(split, bs=bs, seed=0, device='cpu')
    model = build_vlm('resnet18-28', None, tuple(TASKS[:n_tasks]), info=split.info)
    mem = MemoryCallback()
    learn = mtl_learner(dls, model, weighting, precision=precision, channels_last=True, select_best=False, metrics=False, cbs=[mem])
    learn.create_opt()
    import gc; gc.collect()
    base = rss_now(); reset_peak_rss()
    with learn.no_logging(), learn.no_bar(): learn.fit(1)
    peak = _vm_hwm() or 0
    r = mem.record()
    acc = sum(r[k] or 0 for k in ('mem_params_mb', 'mem_grads_mb', 'mem_optim_mb', 'mem_activations_mb'))
    return dict(n_tasks=n_tasks, weighting=weighting, base_mb=base/MB, fit_delta_mb=(peak - base)/MB, accounted_mb=acc,
                activations_mb=r['mem_activations_mb'], params_mb=r['mem_params_mb'], grads_mb=r['mem_grads_mb'], optim_mb=r['mem_optim_mb'])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--bs', type=int, default=64); ap.add_argument('--steps', type=int, default=2)
    ap.add_argument('--precision', default='bf16'); ap.add_argument('--weightings', nargs='+', default=WEIGHTINGS)
    ap.add_argument('--threads', type=int, default=threads_from_env()); ap.add_argument('--no-write', action='store_true')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)   # internal: 'n_tasks,weighting' in this process
    a = ap.parse_args(); setup_threads(a.threads)
    if a.one:
        n, w = a.one.split(','); print('RESULT ' + json.dumps(one(int(n), w, a.bs, a.steps, a.precision))); return
    mach = machine(a.threads)
    configs = [(1, 'equal')] + [(n, w) for n in (2, 3, 4) for w in a.weightings]
    res = {}
    for n, w in configs:
        cmd = [sys.executable, __file__, '--one', f'{n},{w}', '--bs', str(a.bs), '--steps', str(a.steps), '--precision', a.precision, '--threads', str(a.threads)]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = [l for l in p.stdout.splitlines() if l.startswith('RESULT ')]
        if not line: print(f'{n} tasks, {w}: FAILED\n{p.stderr[-2000:]}'); res[n, w] = None; continue
        res[n, w] = json.loads(line[-1][7:])
        r = res[n, w]; print(f"{n} tasks, {w}: fit RSS delta {r['fit_delta_mb']:.0f} MiB, accounted {r['accounted_mb']:.0f} MiB "
                             f"(activations {r['activations_mb']:.0f})", flush=True)
    s = res[1, 'equal']
    rows = [f"| 1 (classify) | single task | {s['fit_delta_mb']:.0f} | 1.00 | {s['accounted_mb']:.0f} | 1.00 | {s['activations_mb']:.0f} |"]
    for n, w in configs[1:]:
        r = res[n, w]
        if r is None: rows.append(f'| {n} | {w} | failed | | | | |'); continue
        rows.append(f"| {n} | {w} | {r['fit_delta_mb']:.0f} | {r['fit_delta_mb']/s['fit_delta_mb']:.2f} | {r['accounted_mb']:.0f} "
                    f"| {r['accounted_mb']/s['accounted_mb']:.2f} | {r['activations_mb']:.0f} |")
    ll = {n: [res[n, w]['fit_delta_mb']/s['fit_delta_mb'] for m, w in configs[1:] if m == n and w in ('equal', 'uncertainty') and res[n, w]]
          for n in (2, 3, 4)}
    loss_level = ', '.join(f"{n} tasks {min(v):.2f}–{max(v):.2f}× ({'within' if max(v) <= 1.15 else 'over'} the goal)" for n, v in ll.items() if v)
    body = '\n'.join(['## Memory of multi-task training against single-task', '',
        '| tasks | weighting | fit RSS delta (MiB) | ratio | params+grads+optim+activations (MiB) | ratio | activations (MiB) |',
        '|---|---|---|---|---|---|---|', *rows, '',
        (f'Loss-level weightings (equal, uncertainty) against single-task, fit RSS delta: {loss_level}; goal ≤ 1.15. ' if loss_level else '') +
        'Gradient-level weightings (UPGrad, PCGrad, MGDA) back-propagate each task separately and keep one gradient per task of '
        'the shared encoder, so their extra cost grows with the number of tasks × the shared parameter count. The fourth task, '
        'denoise, encodes a noisy copy of the image (a second encoder pass, `reencodes_image`), so its activations come on top for every '
        'weighting: a cost of that task, not of multi-task training.', '',
        f'Command: `OMP_NUM_THREADS={a.threads} python benchmarks/memory.py --bs {a.bs} --steps {a.steps}`; {today()}; {mach}. '
        f'ResNet-18(28), 28-px phantoms, bs {a.bs}, {a.steps} steps, {a.precision}, channels_last, one fresh process per row; tasks in order '
        f'{", ".join(TASKS)}. Baseline: the single-task row of the same run.'])
    print('\n' + body)
    if not a.no_write: write_section('memory', body)

if __name__ == '__main__': main()
