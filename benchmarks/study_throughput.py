"""Study throughput: where the quick study's wall time goes, per run, and what the forkserver's preloads save.

Runs the quick study (studies/quick.yaml: 18 runs, phantoms, offline) into a temporary folder with the default
executor (each run in its own process, forked from a server), reads the records and prints, per phase, the mean and
median seconds per run and the share of the runs' wall time: start-up (`time_startup_s`: handing the run over to its
process), data, model (with what a run imports on first use), training steps, evaluation (validation in the fit, the
final val/test evaluation), writing, and the residual (`time_other_s`); then the driver's own time (the study's
wall less the runs': claiming runs, appending records), the ratio of the study's wall to its summed training time,
and whether start-up meets the goal of ≤ 1 s per run.

Before/after: the forkserver imports what each run would otherwise import again on first use (`torch._dynamo` for
the FLOP probe, transformers for MiniLM; `mtlsyn.study.runner._preload`). A two-run study of the quick study's
MiniLM-contrastive setting (one epoch, 120 training images) runs `--ab-rounds` times with the old preload list
(mtlsyn only) and the new one, alternating, each with a fresh server; the figures are a run's start-up plus model
build ("time to the first step"), the server's cold start (the first run's start-up), and the study's wall.

    OMP_NUM_THREADS=1 python benchmarks/study_throughput.py [--ab-rounds 2] [--no-write]
"""
from __future__ import annotations
import argparse, os, time, tempfile, shutil, warnings
from pathlib import Path
import numpy as np
warnings.filterwarnings('ignore')
from _common import ROOT, threads_from_env, setup_threads, machine, today, write_section

QUICK = ROOT/'studies'/'quick.yaml'
PHASES = [('startup', 'start-up'), ('data', 'data'), ('model', 'model'), ('train', 'training'), ('eval', 'evaluation'),
          ('write', 'writing'), ('other', 'other (residual)')]
OLD_PRELOAD = ['mtlsyn', 'mtlsyn.study.runner']   # the forkserver's preload list before this benchmark

def fresh_server():
    "Stop the forkserver, so that the next isolated run starts a new one with the current preload list"
    from multiprocessing import forkserver
    forkserver._forkserver._stop()

def run(cfg, out:Path, threads:int, preload=None)->tuple[list[dict], float]:
    "`cfg` with isolated runs into `out` (a fresh server; `preload` replaces the runner's list); its ok records and wall seconds"
    import mtlsyn.study.runner as R
    new = R._preload
    if preload is not None: R._preload = lambda runs: list(preload)
    try:
        fresh_server(); t = time.perf_counter()
        recs = R.run_study(cfg, out, isolate=True, threads=threads, log=lambda *a: None)
        wall = time.perf_counter() - t
    finally: R._preload = new
    bad = [r for r in recs if r.get('status') != 'ok']
    if bad: raise SystemExit(f"{len(bad)} runs not ok: {bad[0].get('error')}")
    return recs, wall

def mini(seed_offset:int=0)->dict:
    "The quick study's MiniLM-contrastive setting, no synthetic images, one epoch on 120 phantoms, two seeds"
    import yaml
    c = yaml.safe_load(QUICK.read_text())
    c.pop('grid'); c.pop('baseline', None)
    return {**c, 'name': 'ab', 'tasks': ['classify', 'contrastive'], 'text_encoder': 'minilm', 'generator': 'none', 'ratio': 0,
            'budget': 8, 'benchmark_kwargs': dict(n_train=120, n_val=60, n_test=60), 'epochs': 1, 'bs': 16,
            'seeds': [seed_offset, seed_offset+1]}

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--ab-rounds', type=int, default=2); ap.add_argument('--threads', type=int, default=threads_from_env())
    ap.add_argument('--keep', default=None, help='keep the quick study in this folder (default: a temporary one, removed)')
    ap.add_argument('--no-write', action='store_true')
    ap.add_argument('--study', default=str(QUICK), help=argparse.SUPPRESS)   # a smaller study, to check this script
    a = ap.parse_args(); setup_threads(a.threads)
    t0 = time.perf_counter()
    import mtlsyn.study.runner  # noqa: F401  (the driver's own import, once per study)
    import_s = time.perf_counter() - t0
    mach = machine(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix='study-throughput-'))
    try:
        # before/after the preloads, alternating, each with a fresh server
        ab = {'old': [], 'new': []}
        for k in range(a.ab_rounds):
            for v in (('old', 'new') if k % 2 == 0 else ('new', 'old')):
                recs, wall = run(mini(), tmp/f'ab-{v}-{k}', a.threads, OLD_PRELOAD if v == 'old' else None)
                ab[v].append(dict(wall=wall, cold=recs[0]['time_startup_s'], startup=[r['time_startup_s'] for r in recs],
                                  first_step=[r['time_startup_s'] + r['time_data_s'] + r['time_model_s'] for r in recs],
                                  warm_first_step=[r['time_startup_s'] + r['time_data_s'] + r['time_model_s'] for r in recs[1:]],
                                  model=[r['time_model_s'] for r in recs]))
                print(f"A/B round {k+1}, {v} preload: study {wall:.1f} s, server cold start {ab[v][-1]['cold']:.1f} s, "
                      f"time to first step of the second run {ab[v][-1]['warm_first_step'][0]:.2f} s", flush=True)
        # the quick study, default executor
        out = Path(a.keep) if a.keep else tmp/'quick'
        recs, study_s = run(a.study, out, a.threads)
    finally:
        if not a.keep: shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()[0]
    n = len(recs)
    per = {p: np.array([r[f'time_{p}_s'] for r in recs]) for p, _ in PHASES}
    runs_wall = per['startup'] + np.array([r['time_run_s'] for r in recs])
    total = runs_wall.sum(); driver = study_s - total; train = per['train'].sum()
    rows = [f"| {name} | {per[p].mean():.2f} | {np.median(per[p]):.2f} | {per[p].sum()/total:.0%} |" for p, name in PHASES]
    rows.append(f"| **run wall** (start-up + `time_run_s`) | {runs_wall.mean():.2f} | {np.median(runs_wall):.2f} | 100% |")
    su, warm = per['startup'], per['startup'][1:]
    first = per['startup'] + per['data'] + per['model']
    meets = warm.mean() <= 1
    goal = (f"Start-up per run: {warm.mean():.2f} s (mean of runs 2–{n}; median of all {np.median(su):.2f} s) — goal ≤ 1 s: "
            f"**{'met' if meets else 'missed'}**. The first run also waits {su[0]:.1f} s for the server to start and import "
            f"(once per study; {su.mean():.2f} s per run with it). Time to a run's first step (start-up + data + model): "
            f"median {np.median(first):.2f} s.")
    def m(v, key): return np.mean([x for d in ab[v] for x in np.atleast_1d(d[key])])
    abrow = lambda v, label: (f"| {label} | {m(v, 'warm_first_step'):.2f} | {m(v, 'model'):.2f} | {m(v, 'cold'):.1f} | {m(v, 'wall'):.1f} |")
    body = '\n'.join(['## Study throughput: the quick study\'s wall time per run', '',
        f'{n} runs in {study_s:.0f} s (driver: the study\'s wall less its runs\', {driver:.1f} s, {driver/n:.2f} s per run; '
        f'the driver\'s import of mtlsyn, once per study, {import_s:.1f} s more). '
        f'**Study wall / summed training time: {study_s/train:.1f}×** (runs\' wall / training: {total/train:.1f}×).', '',
        '| phase | mean s/run | median s/run | share of the runs\' wall |', '|---|---|---|---|', *rows, '',
        goal, '',
        f'Before/after the forkserver\'s preloads ({a.ab_rounds} round(s), alternating, a fresh server each; a two-run study of the '
        'MiniLM-contrastive setting, one epoch on 120 phantoms): the time to a run\'s first step (start-up + data + model, the second run), '
        'its model phase, the server\'s cold start (the first run\'s start-up) and the study\'s wall.', '',
        '| preload | time to first step (s) | model phase (s) | server cold start (s) | study wall (s) |', '|---|---|---|---|---|',
        abrow('old', 'before: mtlsyn only'), abrow('new', 'after: + torch._dynamo, transformers (`_preload`)'), '',
        'Before, each run process imported `torch._dynamo` (the FLOP probe\'s first operator) and, for a run that embeds text, '
        'transformers again: seconds of its model phase, the "start-up" the issue saw. The server now imports them once.', '',
        f'Command: `OMP_NUM_THREADS={a.threads} python benchmarks/study_throughput.py --ab-rounds {a.ab_rounds}`; {today()}; {mach}; '
        f'1-min load {load1:.1f} at the end (the machine runs other studies: absolute seconds are inflated, the shares less so). '
        'Baseline of the before/after: the old preload list in the same run.'])
    print('\n' + body)
    if not a.no_write: write_section('study-throughput', body); print('wrote the study-throughput section of benchmarks/RESULTS.md')

if __name__ == '__main__': main()
