"""The MedMNIST v2 ResNet-18 (28) recipe, in full, through `mtl_learner`: a resumable study, one JSON record per (dataset, seed).

Recipe (MedMNIST v2, Yang et al. 2023): full train split at 28 px, ResNet-18 with a 3x3 stem and no max-pool,
Adam lr 1e-3, lr x0.1 at 50% and 75% of 100 epochs, batch 128, no augmentation, the epoch with the best val AUC
selected (no early stopping), test AUC/ACC of that epoch (ACC: argmax of the softmax, i.e. threshold 0.5).

Each record holds the per-epoch val AUC/ACC and train loss, the epoch at which val AUC first reaches 95% of
its best, test AUC/ACC at the selected epoch, and, for the ACC analysis only (never for selection), the test
AUC/ACC of every epoch, the test class balance, balanced accuracy, and ACC at a threshold chosen on val.
A finished (dataset, seed) is skipped; records are written atomically, so a killed study resumes where it stopped.

    OMP_NUM_THREADS=1 MEDMNIST_ROOT=/work/shared/data/medmnist python studies/medmnist_resnet18.py \\
        --datasets breastmnist --seeds 0 1 2 --out studies/results/medmnist-recipe
"""
from __future__ import annotations
import argparse, json, os, sys, time, datetime
from pathlib import Path
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from fastai.callback.core import Callback
from fastai.torch_core import set_seed, to_device

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mtlsyn.core import env_info, atomic_write
from mtlsyn.data.all import load_benchmark
from mtlsyn.data.loaders import dataloaders
from mtlsyn.model.vlm import build_vlm
from mtlsyn.learner import mtl_learner, recorder_frame

PUBLISHED = dict(breastmnist=(0.901, 0.863), pneumoniamnist=(0.944, 0.854))   # MedMNIST v2, ResNet-18 (28): test AUC, ACC

class MultiStepLR(Callback):
    "Multiply the learning rate by `gamma` at each epoch in `milestones` (MedMNIST: 0.1 at 50% and 75% of the epochs)"
    def __init__(self, lr, milestones=(50, 75), gamma=0.1): self.lr, self.milestones, self.gamma = lr, milestones, gamma
    def before_epoch(self): self.opt.set_hyper('lr', self.lr * self.gamma ** sum(self.epoch >= m for m in self.milestones))

def predict(learn, dl)->tuple[np.ndarray, np.ndarray]:
    "Positive-class probabilities and labels of the binary classify task on `dl`"
    model = learn.model; was = model.training; model.eval(); ps, ys = [], []
    dev = next(model.parameters()).device
    with torch.no_grad():
        for b in dl:
            b = to_device(b[0] if isinstance(b, (tuple, list)) else b, dev)
            with learn.autocast_ctx(): out = model(b)['classify']
            ps.append(out.float().softmax(-1)[:, -1].cpu()); ys.append(b['label'].reshape(-1).cpu())
    model.train(was)
    return torch.cat(ps).numpy(), torch.cat(ys).numpy()

def acc_at(p, y, thr=0.5): return float(((p > thr).astype(int) == y).mean())
def bacc_at(p, y, thr=0.5):
    pred = (p > thr).astype(int); return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))
def val_threshold(p, y)->float:
    "The threshold on positive-class probability with the best val accuracy (ties: the one closest to 0.5)"
    cands = np.unique(np.concatenate([p, [0.5]]))
    accs = np.array([acc_at(p, y, t) for t in cands])
    best = cands[accs == accs.max()]
    return float(best[np.argmin(abs(best - 0.5))])

class TestEachEpoch(Callback):
    "Record test AUC/ACC after every epoch, for the analysis only: selection uses val alone"
    order = 100
    def __init__(self, dl): self.dl, self.rows = dl, []
    def after_epoch(self):
        p, y = predict(self.learn, self.dl)
        self.rows.append(dict(auc=float(roc_auc_score(y, p)), acc=acc_at(p, y)))

def run(dataset:str, seed:int, a)->dict:
    set_seed(a.seed_offset + seed)
    split = load_benchmark(dataset, size=28, budget='all', seed=seed, root=os.environ.get('MEDMNIST_ROOT'))
    dls = dataloaders(split, bs=a.bs, seed=seed, device='cpu' if not torch.cuda.is_available() else None)
    model = build_vlm('resnet18-28', None, ('classify',), info=split.info)
    tcb = TestEachEpoch(dls.test)
    ms = (round(0.5*a.epochs), round(0.75*a.epochs))
    learn = mtl_learner(dls, model, 'equal', lr=a.lr, opt='adam', precision=a.precision, channels_last=a.channels_last,
                        monitor='classify_auc', select_best=True, patience=None, cbs=[MultiStepLR(a.lr, ms), tcb])
    t0, c0 = time.time(), time.process_time()
    with learn.no_bar(): learn.fit(a.epochs, a.lr)
    wall, cpu = time.time() - t0, time.process_time() - c0
    df = recorder_frame(learn)
    vauc = df['classify_auc'].tolist(); best = max(vauc)
    p_te, y_te = predict(learn, dls.test); p_va, y_va = predict(learn, dls.valid)
    thr = val_threshold(p_va, y_va)
    ev = learn.evaluate(dls.test)
    return dict(
        dataset=dataset, seed=seed, model='resnet18-28', recipe='medmnist-v2', epochs=a.epochs, lr=a.lr, lr_milestones=list(ms),
        bs=a.bs, opt='adam', augmentation='none', selection='best val AUC, no early stopping', precision=a.precision,
        channels_last=a.channels_last, n_train=len(split.labeled), n_val=len(split.val), n_test=len(split.test),
        best_epoch=int(np.argmax(vauc)), best_val_auc=best, val_acc_at_best=float(df['classify_acc'][int(np.argmax(vauc))]),
        epoch_95=int(next(i for i, v in enumerate(vauc) if v >= 0.95*best)),
        test_auc=ev['classify_auc'], test_acc=ev['classify_acc'],
        test_auc_check=float(roc_auc_score(y_te, p_te)), test_acc_argmax=acc_at(p_te, y_te),
        test_bacc=bacc_at(p_te, y_te), test_pos_rate=float(y_te.mean()), test_pred_pos_rate=float((p_te > 0.5).mean()),
        train_pos_rate=float(np.asarray(split.labeled.labels).reshape(-1).mean()), val_pos_rate=float(y_va.mean()),
        val_threshold=thr, test_acc_val_threshold=acc_at(p_te, y_te, thr), test_bacc_val_threshold=bacc_at(p_te, y_te, thr),
        test_acc_best_threshold_oracle=max(acc_at(p_te, y_te, t) for t in np.unique(p_te)),
        published_auc=PUBLISHED.get(dataset, (None, None))[0], published_acc=PUBLISHED.get(dataset, (None, None))[1],
        curve_val_auc=vauc, curve_val_acc=df['classify_acc'].tolist(), curve_train_loss=df['train_loss'].tolist(),
        curve_test_auc=[r['auc'] for r in tcb.rows], curve_test_acc=[r['acc'] for r in tcb.rows],
        wall_s=round(wall, 1), cpu_s=round(cpu, 1), date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        **env_info('cpu' if not torch.cuda.is_available() else None))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--datasets', nargs='+', default=['breastmnist']); p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--epochs', type=int, default=100); p.add_argument('--bs', type=int, default=128); p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'], default='bf16')
    p.add_argument('--channels-last', type=int, default=1, help='1: train in channels_last (fastest on this CPU, benchmarks/RESULTS.md)')
    p.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 1)))
    p.add_argument('--seed-offset', type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument('--out', default=str(ROOT/'studies'/'results'/'medmnist-recipe'))
    a = p.parse_args(argv); a.channels_last = bool(a.channels_last)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    for ds in a.datasets:
        for seed in a.seeds:
            f = out/f'{ds}_seed{seed}_e{a.epochs}_{a.precision}.json'
            if f.exists(): print(f'skip {f.name}: done', flush=True); continue
            print(f'run {ds} seed {seed} ({a.epochs} epochs, {a.precision}, channels_last={a.channels_last}, {a.threads} thread(s))', flush=True)
            rec = run(ds, seed, a)
            atomic_write(f, json.dumps(rec, indent=1))
            print(f"done {f.name}: best epoch {rec['best_epoch']} (val AUC {rec['best_val_auc']:.3f}, 95% at epoch {rec['epoch_95']}), "
                  f"test AUC {rec['test_auc']:.3f} ACC {rec['test_acc']:.3f}, {rec['wall_s']:.0f} s", flush=True)

if __name__ == '__main__': main()
