"""mtlsyn (all instruments on) against a plain PyTorch loop: training time per epoch, fp32 and bf16, with and without channels_last.

Both train ResNet-18(28) (3x3 stem, no max-pool, linear head, 2 classes) on the same class-balanced 1,024 images
of PneumoniaMNIST, batch 128, PyTorch's Adam 1e-3, the same precision and memory format. The plain loop uses only
torch (a `TensorDataset` of the same normalised images, torchvision's ResNet-18 with the same stem); mtlsyn uses
`load_benchmark`, `dataloaders`, `build_vlm('resnet18-28', tasks=('classify',))`, `mtl_learner` with
ConvergenceCallback, MemoryCallback and ThroughputCallback. Each measured epoch is a fresh `fit(1)`, so mtlsyn pays
its probes (FLOP count, activation probe, per-part timing) in every epoch: the worst case.

Protocol: per precision, one warm-up round, then `--rounds` rounds of the four variants (plain, mtlsyn) x
(channels_last off, on), the order reversed every round. The figure is the median over rounds of the ratio of
training-phase times (mtlsyn's `before_train`..`after_train`, the plain loop's epoch), in process CPU time on a CPU
(the machine is shared; wall time is printed too) and wall time on a GPU.

    OMP_NUM_THREADS=1 python benchmarks/overhead.py [--rounds 3] [--precisions bf16 fp32] [--no-write]
"""
from __future__ import annotations
import argparse, warnings
import numpy as np
warnings.filterwarnings('ignore')
from _common import threads_from_env, setup_threads, machine, today, Clock, write_section, pneumonia_subset
import torch
from torch import nn
from fastai.callback.core import Callback

def plain_model(in_chans:int=1, n_out:int=2)->nn.Module:
    "torchvision's ResNet-18 with MedMNIST's 28-px stem (3x3 stride 1, no max-pool)"
    import torchvision
    m = torchvision.models.resnet18(weights=None, num_classes=n_out)
    m.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False); m.maxpool = nn.Identity()
    return m

class PlainLoop:
    "A plain PyTorch training loop: Adam, cross-entropy, optional bf16 autocast and channels_last"
    def __init__(self, x, y, bs:int, precision:str, channels_last:bool, device, seed:int=0):
        torch.manual_seed(seed)
        self.model = plain_model(x.shape[1], int(y.max()) + 1).to(device)
        if channels_last: self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-3)
        self.dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), bs, shuffle=True,
                                              generator=torch.Generator().manual_seed(seed))
        self.dtype = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)[precision]
        self.device, self.cl = torch.device(device), channels_last
        self.scaler = torch.amp.GradScaler('cuda', enabled=precision == 'fp16')
    def epoch(self):
        self.model.train()
        for xb, yb in self.dl:
            xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            if self.cl: xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                loss = nn.functional.cross_entropy(self.model(xb).float(), yb)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward(); self.scaler.step(self.opt); self.scaler.update()
        if self.device.type == 'cuda': torch.cuda.synchronize()

class TrainTime(Callback):
    "Wall and process-CPU seconds of the training phase of each epoch"
    order = -20
    def __init__(self, cpu:bool): self.cpu, self.times = cpu, []
    def before_train(self):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        self.clock = Clock(self.cpu).__enter__()
    def after_train(self):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        self.clock.__exit__(); self.times.append((self.clock.s, self.clock.wall))

def instruments():
    from mtlsyn.callback.convergence import ConvergenceCallback
    from mtlsyn.callback.memory import MemoryCallback
    from mtlsyn.callback.throughput import ThroughputCallback
    return [ConvergenceCallback(), MemoryCallback(), ThroughputCallback()]

class MtlsynRun:
    "mtlsyn's stack on `dls`: one `fit(epochs)` per `epoch()`, all instruments on, the last epoch's training phase timed"
    def __init__(self, dls, info, precision:str, channels_last:bool, cpu:bool, seed:int=0, epochs:int=1):
        from mtlsyn.model.vlm import build_vlm
        from mtlsyn.learner import mtl_learner
        torch.manual_seed(seed)
        model = build_vlm('resnet18-28', None, ('classify',), info=info)
        self.tt, self.epochs = TrainTime(cpu), epochs
        self.learn = mtl_learner(dls, model, 'equal', lr=1e-3, opt='adam', precision=precision, channels_last=channels_last,
                                 select_best=False, cbs=instruments() + [self.tt])
    def epoch(self):
        with self.learn.no_logging(), self.learn.no_bar(): self.learn.fit(self.epochs)

def measure(variants:dict, rounds:int, cpu:bool, log=print)->dict:
    "Per variant, the (selected clock, wall) seconds of one training epoch in each of `rounds` rounds after a warm-up round"
    names, out = list(variants), {k: [] for k in variants}
    for r in range(rounds + 1):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            v = variants[k]
            if hasattr(v, 'tt'): v.epoch(); t = v.tt.times[-1]   # a learner: its own timed training phase
            else:
                with Clock(cpu) as c: v.epoch()
                t = (c.s, c.wall)
            if r: out[k].append(t)
        if r: log(f'  round {r}: ' + ', '.join(f'{k} {out[k][-1][0]:.2f} s' for k in names), flush=True)
        else: log('  warm-up round done', flush=True)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=3); ap.add_argument('--bs', type=int, default=128)
    ap.add_argument('--n-per-class', type=int, default=512); ap.add_argument('--precisions', nargs='+', default=['bf16', 'fp32'])
    ap.add_argument('--probe-every-epoch', action='store_true', help="worst case: each measured epoch is a fresh fit(1) that runs every probe; default: fit(2), the second epoch timed (steady state: probes run once per fit)")
    ap.add_argument('--variants', nargs='+', default=['plain', 'plain+cl', 'mtlsyn', 'mtlsyn+cl'])
    ap.add_argument('--benchmark', default='pneumoniamnist', help="'pneumoniamnist', or 'phantom' where MedMNIST is absent (the GPU check)")
    ap.add_argument('--threads', type=int, default=threads_from_env()); ap.add_argument('--no-write', action='store_true')
    a = ap.parse_args()
    setup_threads(a.threads)
    cpu = not torch.cuda.is_available(); dev = 'cpu' if cpu else 'cuda'
    mach = machine(a.threads)
    split, dls, x, y = pneumonia_subset(a.n_per_class, a.bs, benchmark=a.benchmark)
    clock = 'process CPU time' if cpu else 'wall time'
    print(f'{mach}; {len(y)} {a.benchmark} train images, bs {a.bs}; clock: {clock}', flush=True)
    res, rows = {}, []
    for prec in a.precisions:
        print(f'{prec}:', flush=True)
        ep = 1 if a.probe_every_epoch else 2
        variants = {f'plain{"+cl" if cl else ""}': PlainLoop(x, y, a.bs, prec, cl, dev) for cl in (False, True)}
        variants.update({f'mtlsyn{"+cl" if cl else ""}': MtlsynRun(dls, split.info, prec, cl, cpu, epochs=ep) for cl in (False, True)})
        variants = {k: v for k, v in variants.items() if k in a.variants}
        t = measure(variants, a.rounds, cpu)
        med = {k: float(np.median([s for s, _ in v])) for k, v in t.items()}
        ratio = lambda num, den: float(np.median([n[0]/d[0] for n, d in zip(t[num], t[den])])) if num in t and den in t else float('nan')
        fastest_plain = min((k for k in ('plain', 'plain+cl') if k in med), key=med.get)
        res[prec] = dict(med=med, fastest_plain=fastest_plain,
                         cl_vs_cl=ratio('mtlsyn+cl', 'plain+cl'), off_vs_off=ratio('mtlsyn', 'plain'),
                         cl_vs_fastest=ratio('mtlsyn+cl', fastest_plain), off_vs_fastest=ratio('mtlsyn', fastest_plain),
                         cl_gain_plain=ratio('plain', 'plain+cl'), cl_gain_mtlsyn=ratio('mtlsyn', 'mtlsyn+cl'),
                         img_s={k: len(y)/med[k] if k in med else float('nan') for k in ('plain', 'plain+cl', 'mtlsyn', 'mtlsyn+cl')})
        r = res[prec]
        rows.append(f"| {prec} | {r['img_s']['plain']:.0f} | {r['img_s']['plain+cl']:.0f} | {r['img_s']['mtlsyn']:.0f} | {r['img_s']['mtlsyn+cl']:.0f} "
                    f"| {r['cl_vs_cl']:.3f}× | {r['off_vs_off']:.3f}× | {r['cl_gain_plain']:.3f}× | {r['cl_gain_mtlsyn']:.3f}× |")
    p = a.precisions
    fmt = lambda key: f"{res[p[0]][key]:.2f}× ({p[0]}" + ''.join(f"; {q} {res[q][key]:.2f}×" for q in p[1:]) + ')'
    head = f"overhead vs plain loop: {fmt('cl_vs_fastest')}"
    lines = [head,
             f"(mtlsyn with channels_last=True, the default on CPU, against the fastest plain loop measured ({', '.join(sorted({res[q]['fastest_plain'] for q in p}))}); "
             f"mtlsyn with channels_last=False: {fmt('off_vs_fastest')}; both sides channels_last off: {fmt('off_vs_off')}; nan: variant not run)", '',
             '| precision | plain img/s | plain+channels_last img/s | mtlsyn img/s | mtlsyn+channels_last img/s | mtlsyn/plain (both channels_last) | mtlsyn/plain (both off) | channels_last speed-up, plain | channels_last speed-up, mtlsyn |',
             '|---|---|---|---|---|---|---|---|---|', *rows, '',
             f'Command: `OMP_NUM_THREADS={a.threads} python benchmarks/overhead.py --rounds {a.rounds}' + (f' --benchmark {a.benchmark}' if a.benchmark != 'pneumoniamnist' else '') + (' --probe-every-epoch' if a.probe_every_epoch else '') + (f' --variants {" ".join(a.variants)}' if len(a.variants) < 4 else '') + f'`; {today()}; {mach}. '
             f'ResNet-18(28) on {len(y)} class-balanced {a.benchmark} train images, bs {a.bs}, Adam 1e-3; mtlsyn with ConvergenceCallback, '
             f'MemoryCallback, ThroughputCallback; ' + ('each measured epoch a fresh fit(1) that runs every probe (FLOP count, activation probe, per-part timing of 3 steps): the worst case' if a.probe_every_epoch else 'each measurement a fit(2) whose second epoch is timed (steady state: the probes run in the first epoch, once per fit, as in a real run)') + f'. Ratios: median over {a.rounds} '
             f'rounds (after a warm-up round, order reversed each round) of training-phase {clock} per epoch, the plain loop the baseline '
             f'measured in the same run. img/s = training images / median epoch {clock}. Goal: ≤ 1.03.']
    body = ('## Overhead against a plain PyTorch loop' + (' (worst case: probes every epoch)' if a.probe_every_epoch else '') + '\n\n' + '\n'.join(lines))
    print('\n' + body)
    if not a.no_write: write_section('overhead-worst-case' if a.probe_every_epoch else 'overhead', body); print('wrote the overhead section of benchmarks/RESULTS.md')

if __name__ == '__main__': main()
