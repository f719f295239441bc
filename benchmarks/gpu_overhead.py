"""Where mtlsyn's training step loses time against a plain loop on a GPU: per-step milliseconds of a plain PyTorch loop,
fastai's own Learner, mtlsyn with no instruments, with each instrument alone, and with all three, at two batch sizes.

On a GPU a ResNet-18(28) step on 28-px images takes a few milliseconds, so any per-step host work (Python callbacks,
building dict batches, host-device copies, synchronisations) shows up as a ratio that it never shows on a CPU, where the
step itself takes ~0.5 s. This script separates those costs: every variant trains the same model on the same images
(phantoms, `benchmarks/_common.pneumonia_subset`), batch `--bs` (several allowed), bf16 autocast, Adam 1e-3, a `fit(2)`
whose second epoch is timed (steady state), the variants alternating over `--rounds` rounds after a warm-up round.
The per-step overhead of a variant is (its epoch time − the plain loop's) / steps per epoch.

    PYTHONPATH=. python benchmarks/gpu_overhead.py [--bs 128 512] [--rounds 3] [--n-per-class 1024]
"""
from __future__ import annotations
import argparse, math, warnings
import numpy as np
warnings.filterwarnings('ignore')
from _common import machine, today, pneumonia_subset, threads_from_env, setup_threads
import torch
from torch import nn
from overhead import PlainLoop, TrainTime, plain_model, measure

def mtlsyn_run(dls, info, which:tuple, precision:str='bf16'):
    "mtlsyn's learner with the instruments named in `which` ('conv', 'mem', 'thr'), one fit(2) per epoch() with its second epoch timed"
    from mtlsyn.model.vlm import build_vlm
    from mtlsyn.learner import mtl_learner
    from mtlsyn.callback.convergence import ConvergenceCallback
    from mtlsyn.callback.memory import MemoryCallback
    from mtlsyn.callback.throughput import ThroughputCallback
    torch.manual_seed(0)
    cbs = [dict(conv=ConvergenceCallback, mem=MemoryCallback, thr=ThroughputCallback)[w]() for w in which]
    class Run:
        def __init__(s):
            s.tt = TrainTime(cpu=False)
            s.learn = mtl_learner(dls, build_vlm('resnet18-28', None, ('classify',), info=info), 'equal', lr=1e-3, opt='adam',
                                  precision=precision, channels_last=False, select_best=False, cbs=cbs + [s.tt])
        def epoch(s):
            with s.learn.no_logging(), s.learn.no_bar(): s.learn.fit(2)
    return Run()

def fastai_run(x, y, bs:int, dev:str='cuda'):
    "fastai's own Learner (no mtlsyn) on the same tensors: fastai DataLoaders over a TensorDataset, bf16 MixedPrecision"
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.optimizer import Adam
    from fastai.callback.fp16 import MixedPrecision, AMPMode
    torch.manual_seed(0)
    ds = torch.utils.data.TensorDataset(x, y)
    dls = DataLoaders(DataLoader(ds, bs=bs, shuffle=True, device=dev), DataLoader(ds, bs=bs, device=dev), device=dev)
    class Run:
        def __init__(s):
            s.tt = TrainTime(cpu=False)
            s.learn = Learner(dls, plain_model(x.shape[1], int(y.max()) + 1), loss_func=nn.CrossEntropyLoss(), opt_func=Adam, lr=1e-3,
                              cbs=[MixedPrecision(amp_mode=AMPMode.BF16), s.tt])
        def epoch(s):
            with s.learn.no_logging(), s.learn.no_bar(): s.learn.fit(2)
    return Run()

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--bs', type=int, nargs='+', default=[128, 512]); ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--n-per-class', type=int, default=1024); ap.add_argument('--threads', type=int, default=threads_from_env(4))
    ap.add_argument('--smoke', action='store_true', help="run the script's own code on a CPU (tiny, not a measurement)")
    a = ap.parse_args()
    if not torch.cuda.is_available() and not a.smoke: raise SystemExit('gpu_overhead: needs a CUDA GPU (torch.cuda.is_available() is False); --smoke runs its code on a CPU')
    setup_threads(a.threads)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    print(f"{machine(a.threads)}; {torch.cuda.get_device_name() if dev == 'cuda' else 'CPU smoke test'}; {today()}", flush=True)
    out = []
    for bs in a.bs:
        split, dls, x, y = pneumonia_subset(a.n_per_class, bs, benchmark='phantom')
        steps = math.ceil(len(y) / bs)
        print(f'bs {bs}: {len(y)} images, {steps} steps per epoch', flush=True)
        v = {'plain': PlainLoop(x, y, bs, 'bf16', False, dev), 'fastai': fastai_run(x, y, bs, dev),
             'mtlsyn, no instruments': mtlsyn_run(dls, split.info, ()),
             'mtlsyn + convergence': mtlsyn_run(dls, split.info, ('conv',)), 'mtlsyn + memory': mtlsyn_run(dls, split.info, ('mem',)),
             'mtlsyn + throughput': mtlsyn_run(dls, split.info, ('thr',)), 'mtlsyn, all instruments': mtlsyn_run(dls, split.info, ('conv', 'mem', 'thr'))}
        # PlainLoop.epoch is one epoch; the learners time their second epoch through TrainTime (`measure` reads `.tt`)
        t = measure(v, a.rounds, cpu=False)
        med = {k: float(np.median([w for _, w in ts])) for k, ts in t.items()}
        for k in v:
            out.append(f"| {bs} | {steps} | {k} | {1e3*med[k]/steps:.2f} | {1e3*(med[k]-med['plain'])/steps:+.2f} | {med[k]/med['plain']:.2f}× | {len(y)/med[k]:,.0f} |")
            print(out[-1], flush=True)
    print('\n| bs | steps/epoch | variant | ms/step | overhead ms/step vs plain | epoch time / plain | img/s |\n|---|---|---|---|---|---|---|')
    print('\n'.join(out))

if __name__ == '__main__': main()
