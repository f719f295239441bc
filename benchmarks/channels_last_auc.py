"""channels_last trains to the same val AUC: the same seeds with and without it, through `mtl_learner`.

ResNet-18(28) on a class-balanced 1,024-image PneumoniaMNIST subset, bs 128, Adam 1e-3, `--epochs` epochs, per seed and
precision one run with channels_last off and one with it on (alternating which goes first). Reports the best and
last-epoch val AUC of each run, the paired difference (on - off), and the seed-to-seed spread of the off runs: the
noise against which the difference is judged. channels_last changes the order of floating-point sums inside the
convolutions, so runs are not bitwise equal; they should agree within seed noise.

    OMP_NUM_THREADS=1 python benchmarks/channels_last_auc.py [--seeds 0 1 2] [--epochs 5] [--precisions bf16]
"""
from __future__ import annotations
import argparse, warnings
import numpy as np
warnings.filterwarnings('ignore')
from _common import threads_from_env, setup_threads, machine, today, write_section, pneumonia_subset
from fastai.torch_core import set_seed

def run(dls, info, seed:int, precision:str, cl:bool, epochs:int)->tuple[float, float]:
    from mtlsyn.model.vlm import build_vlm
    from mtlsyn.learner import mtl_learner, recorder_frame
    set_seed(seed)
    learn = mtl_learner(dls, build_vlm('resnet18-28', None, ('classify',), info=info), 'equal', lr=1e-3,
                        precision=precision, channels_last=cl, select_best=False)
    with learn.no_logging(), learn.no_bar(): learn.fit(epochs)
    auc = recorder_frame(learn)['classify_auc']
    return float(auc.max()), float(auc.iloc[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2]); ap.add_argument('--epochs', type=int, default=5)
    ap.add_argument('--precisions', nargs='+', default=['bf16']); ap.add_argument('--n-per-class', type=int, default=512)
    ap.add_argument('--threads', type=int, default=threads_from_env()); ap.add_argument('--no-write', action='store_true')
    a = ap.parse_args(); setup_threads(a.threads)
    mach = machine(a.threads)
    rows, summary = [], []
    for prec in a.precisions:
        res = {}
        for i, seed in enumerate(a.seeds):
            split, dls, _, y = pneumonia_subset(a.n_per_class, 128, seed=seed)
            for cl in ((False, True) if i % 2 == 0 else (True, False)):
                res[seed, cl] = run(dls, split.info, seed, prec, cl, a.epochs)
                print(f'{prec} seed {seed} channels_last={cl}: best val AUC {res[seed, cl][0]:.4f}, last {res[seed, cl][1]:.4f}', flush=True)
            rows.append(f'| {prec} | {seed} | {res[seed, False][0]:.4f} | {res[seed, True][0]:.4f} | {res[seed, True][0]-res[seed, False][0]:+.4f} '
                        f'| {res[seed, False][1]:.4f} | {res[seed, True][1]:.4f} |')
        d = np.array([res[s, True][0] - res[s, False][0] for s in a.seeds])
        sd = float(np.mean([np.std([res[s, cl][0] for s in a.seeds], ddof=1) for cl in (False, True)])) if len(a.seeds) > 1 else float('nan')
        from scipy.stats import ttest_rel
        pv = float(ttest_rel([res[s, True][0] for s in a.seeds], [res[s, False][0] for s in a.seeds]).pvalue) if len(a.seeds) > 1 else float('nan')
        summary.append(f'{prec}: paired difference in best val AUC (channels_last - off) {d.mean():+.4f} ± {d.std(ddof=1) if len(d) > 1 else 0:.4f} (sd over seeds; '
                       f'paired t-test p = {pv:.2f}); seed-to-seed sd of best val AUC {sd:.4f} (mean of the two arms): '
                       + ('within seed noise' if abs(d.mean()) <= sd else 'LARGER than seed noise'))
    body = '\n'.join(['## channels_last trains to the same val AUC', '',
                      '| precision | seed | best val AUC, off | best val AUC, channels_last | difference | last-epoch val AUC, off | last, channels_last |',
                      '|---|---|---|---|---|---|---|', *rows, '', *summary, '',
                      f'Command: `OMP_NUM_THREADS={a.threads} python benchmarks/channels_last_auc.py --epochs {a.epochs} --seeds {" ".join(map(str, a.seeds))}`; '
                      f'{today()}; {mach}. ResNet-18(28), {2*a.n_per_class} class-balanced PneumoniaMNIST train images (the budget drawn with the '
                      f'run\'s seed), full val split, bs 128, Adam 1e-3, {a.epochs} epochs, mtl_learner with and without channels_last.'])
    print('\n' + body)
    if not a.no_write: write_section('channels-last-auc', body)

if __name__ == '__main__': main()
