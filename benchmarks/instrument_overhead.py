"""Overhead of the always-on instruments (convergence, memory, throughput, with their one-step FLOP and
activation probes) on a training epoch of the ResNet-18(28) learner on PneumoniaMNIST.

Protocol: one warm-up epoch, then >= 5 pairs of single-epoch fits, one with and one without the instruments,
the order inside each pair alternating (AB, BA, ...). Each instrumented epoch is a fresh `fit(1)` with fresh
callbacks, so it pays for every probe (FLOP count, saved-tensor count, per-part timing) every epoch: the worst
case, since a real run probes once per fit. The figure is the median over pairs of (epoch time with) /
(epoch time without); an epoch is the wall time of `fit(1)`: training on a random subset of the train split,
then validation. Writes `instrument overhead: R×` into benchmarks/RESULTS.md (other lines kept).

Usage: python benchmarks/instrument_overhead.py [--pairs 6] [--n-train 512] [--bs 64] [--precision bf16]
"""
from __future__ import annotations
import argparse, os, sys, time, platform, datetime, re, warnings
from pathlib import Path
import numpy as np
import torch
from torch import nn
warnings.filterwarnings('ignore')

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

def load_data(root:Path):
    "Train/val images (N,1,28,28 float, normalised) and labels of PneumoniaMNIST; how they were loaded"
    try:
        from mtlsyn.data.medmnist import load_benchmark
        s = load_benchmark('pneumoniamnist', size=28, budget='all', seed=0, root=root)
        tr, va, how = (s.labeled.images, s.labeled.labels), (s.val.images, s.val.labels), 'mtlsyn.data.load_benchmark'
    except Exception as e:
        d = np.load(root/'pneumoniamnist.npz')
        tr, va, how = (d['train_images'], d['train_labels']), (d['val_images'], d['val_labels']), f'numpy ({type(e).__name__}: {e})'
    def prep(x, y):
        x = torch.from_numpy(np.asarray(x)).float().div(255.)
        x = x.permute(0,3,1,2) if x.ndim==4 else x[:,None]
        return (x-0.5)/0.5, torch.from_numpy(np.asarray(y).reshape(-1).astype(np.int64))
    return prep(*tr), prep(*va), how

def build_learner(train, valid, n_train:int, bs:int, precision:str):
    "A fastai Learner: ResNet-18(28) from mtlsyn.model.encoders (else torchvision) + a linear head; which one"
    from fastai.basics import Learner, DataLoaders, RocAucBinary
    from fastai.callback.fp16 import MixedPrecision
    try:
        from mtlsyn.model.encoders import build_image_encoder
        enc = build_image_encoder('resnet18-28', in_chans=1); d, how = enc.out_dim, "mtlsyn.model.encoders 'resnet18-28' + linear head, plain fastai Learner"
        class Net(nn.Module):
            def __init__(self): super().__init__(); self.enc, self.head = enc, nn.Linear(d, 2)
            def forward(self, x):
                f = self.enc(x); f = f['feat'] if isinstance(f, dict) else f
                return self.head(f)
        model = Net()
    except Exception as e:
        import torchvision
        model = torchvision.models.resnet18(num_classes=2)
        model.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False); model.maxpool = nn.Identity()
        how = f'torchvision resnet18 (3x3 stem, no max-pool), plain fastai Learner ({type(e).__name__})'
    DL = torch.utils.data.DataLoader; TDS = torch.utils.data.TensorDataset
    tds = TDS(*train)
    g = torch.Generator().manual_seed(0)
    dls = DataLoaders(DL(tds, bs, sampler=torch.utils.data.RandomSampler(tds, num_samples=n_train, generator=g)),
                      DL(TDS(*valid), 256))
    cbs = [MixedPrecision(amp_mode='bf16')] if precision=='bf16' else []
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=RocAucBinary(), lr=1e-3, cbs=cbs)
    return learn, how

def build_mtl_learner(root:Path, n_train:int, bs:int, precision:str):
    "mtlsyn's own stack: a `budget` subset of PneumoniaMNIST, dict-batch loaders, `build_vlm('resnet18-28')`, `mtl_learner`"
    from mtlsyn.data.medmnist import load_benchmark
    from mtlsyn.data.loaders import dataloaders
    from mtlsyn.model.vlm import build_vlm
    from mtlsyn.learner import mtl_learner
    split = load_benchmark('pneumoniamnist', size=28, budget=n_train//2, seed=0, root=root)
    dls = dataloaders(split, bs=bs, seed=0)
    model = build_vlm('resnet18-28', text_encoder=None, tasks=('classify',), info=split.info)
    learn = mtl_learner(dls, model, precision=precision, select_best=False)
    how = (f"mtlsyn stack: load_benchmark(budget={n_train//2}/class: {len(split.labeled)} train images), "
           f"dataloaders, build_vlm('resnet18-28', tasks=('classify',)), mtl_learner")
    return learn, how, len(split.labeled), len(split.val)

def instruments(metric:str):
    from mtlsyn.callback.convergence import ConvergenceCallback
    from mtlsyn.callback.memory import MemoryCallback
    from mtlsyn.callback.throughput import ThroughputCallback
    return [ConvergenceCallback(metric), MemoryCallback(), ThroughputCallback()]

def epoch_time(learn, cbs=None)->tuple[float, float]:
    "Wall seconds and process CPU seconds (all threads) of one `fit(1)`"
    t0, c0 = time.perf_counter(), time.process_time()
    with learn.no_logging(), learn.no_bar(): learn.fit(1, cbs=cbs)
    return time.perf_counter() - t0, time.process_time() - c0

def write_result(path:Path, line:str):
    "Replace the `instrument overhead:` line of `path` (or append it), keeping every other line"
    lines = path.read_text().splitlines() if path.exists() else ['# Benchmark results', '']
    lines = [l for l in lines if not l.startswith('instrument overhead:')] + [line]
    from mtlsyn.core import atomic_write
    atomic_write(path, '\n'.join(lines) + '\n')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--pairs', type=int, default=6); ap.add_argument('--n-train', type=int, default=512)
    ap.add_argument('--bs', type=int, default=64); ap.add_argument('--precision', default='bf16', choices=['bf16','fp32'])
    ap.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 2)))
    ap.add_argument('--clock', default='auto', choices=['auto','wall','cpu'], help='time epochs by wall clock or process CPU time (auto: wall on a GPU, CPU time on a CPU)')
    ap.add_argument('--model', default='auto', choices=['auto','mtl','plain'], help='mtlsyn learner, plain fastai Learner, or mtl if it builds')
    ap.add_argument('--results', default=str(ROOT/'benchmarks'/'RESULTS.md')); ap.add_argument('--no-write', action='store_true')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    a.clock = 1 if a.clock == 'cpu' or (a.clock == 'auto' and not torch.cuda.is_available()) else 0
    root = Path(os.environ.get('MEDMNIST_ROOT', '/work/shared/data/medmnist'))
    learn = None
    if a.model in ('auto', 'mtl'):
        try:
            learn, model_how, n_tr, n_va = build_mtl_learner(root, a.n_train, a.bs, a.precision); metric = 'classify_auc'
            subset = f'a fixed class-balanced {n_tr}-image subset of the train split (budget {a.n_train//2}/class) + the full val split ({n_va})'
        except Exception as e:
            if a.model == 'mtl': raise
            print(f'note: mtlsyn learner unavailable ({type(e).__name__}: {e}); using a plain fastai Learner')
    if learn is None:
        train, valid, data_how = load_data(root)
        learn, model_how = build_learner(train, valid, a.n_train, a.bs, a.precision); metric = 'roc_auc_score'
        if torch.cuda.is_available(): learn.model.cuda()
        print(f'data: PneumoniaMNIST 28 via {data_how}: {len(train[0])} train images, {len(valid[0])} val')
        subset = f'a random {a.n_train}-image subset of the train split per epoch + the full val split ({len(valid[0])})'
    print(f'model: {model_how}; precision {a.precision}; {a.threads} threads')
    print(f'each epoch: {subset}, bs {a.bs}')
    instr = lambda: instruments(metric)
    warm = epoch_time(learn, instr()); print(f'warm-up epoch (instrumented): {warm[0]:.1f} s wall, {warm[1]:.1f} s CPU')
    ratios, wall_ratios = [], []
    for i in range(a.pairs):
        if i % 2 == 0: t_on = epoch_time(learn, instr()); t_off = epoch_time(learn)
        else: t_off = epoch_time(learn); t_on = epoch_time(learn, instr())
        ratios.append(t_on[a.clock]/t_off[a.clock]); wall_ratios.append(t_on[0]/t_off[0])
        print(f'pair {i+1}: with {t_on[0]:.2f} s wall / {t_on[1]:.2f} s CPU, without {t_off[0]:.2f} s wall / {t_off[1]:.2f} s CPU; '
              f'ratio {ratios[-1]:.3f} ({"CPU" if a.clock else "wall"}), wall {wall_ratios[-1]:.3f}', flush=True)
    r, rw = float(np.median(ratios)), float(np.median(wall_ratios))
    from mtlsyn.core import cpu_name
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU {cpu_name()} ({a.threads} threads)'
    date = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
    clock = ('process CPU time (all threads; the CPU is shared with other jobs, so wall time mostly measures them), '
             f'median wall-time ratio {rw:.3f}') if a.clock else 'wall time'
    line = (f'instrument overhead: {r:.3f}× (median of {a.pairs} epoch pairs of {clock}; ratios {", ".join(f"{x:.3f}" for x in ratios)}; '
            f'{date}; {dev}; ResNet-18(28) on PneumoniaMNIST, {subset}, bs {a.bs}, {a.precision}; {model_how}; '
            f'probes (FLOPs, saved tensors, per-part timing) in every instrumented epoch; target ≤ 1.03)')
    print(line)
    if not a.no_write: write_result(Path(a.results), line); print(f'wrote {a.results}')

if __name__ == '__main__': main()
