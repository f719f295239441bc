"""Training throughput of each image encoder against this machine's matrix-multiply peak, mtlsyn beside a plain loop.

Peak: the best of `--mm-reps` (default 10) 4096x4096 @ 4096x4096 products in fp32 and in bf16, timed in this run.
Per encoder (small-cnn, resnet18-28, resnet50-28, vit-tiny, timm:tf_efficientnet_lite0) + a linear 2-class head on
28-px PneumoniaMNIST, bs 128, Adam, `--precision` (bf16 default) and channels_last: the FLOPs of one training step
(forward + backward) counted with `torch.utils.flop_counter.FlopCounterMode`, and the training time per epoch of
`--steps` steps for the plain PyTorch loop (the same encoder module in a torch-only loop) and for mtlsyn
(`mtl_learner(..., channels_last=True)`, no instruments: `overhead.py` measures those), alternating, `--rounds`
rounds after a warm-up. Achieved GFLOP/s = FLOPs per step x steps / median epoch time; share = achieved / peak.

    OMP_NUM_THREADS=1 python benchmarks/throughput.py [--steps 3] [--rounds 2] [--mm-reps 10] [--no-write]
"""
from __future__ import annotations
import argparse, warnings
import numpy as np
warnings.filterwarnings('ignore')
from _common import threads_from_env, setup_threads, machine, today, Clock, write_section, pneumonia_subset
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from overhead import TrainTime
from fastai.callback.core import Callback, CancelValidException

ENCODERS = ['small-cnn', 'resnet18-28', 'resnet50-28', 'vit-tiny', 'timm:tf_efficientnet_lite0']

def matmul_peak(dtype, n:int=4096, reps:int=10, cpu:bool=True)->float:
    "GFLOP/s of the best of `reps` `n`x`n` matrix products in `dtype` (process CPU time on a CPU, as the training steps; wall time on a GPU)"
    dev = 'cpu' if cpu else 'cuda'
    a, b = torch.randn(n, n, device=dev).to(dtype), torch.randn(n, n, device=dev).to(dtype)
    best = float('inf')
    for _ in range(reps + 1):
        if not cpu: torch.cuda.synchronize()
        with Clock(cpu) as c:
            a @ b
            if not cpu: torch.cuda.synchronize()
        best = min(best, c.s)
    return 2*n**3/best/1e9

class Head(nn.Module):
    def __init__(self, enc): super().__init__(); self.enc, self.head = enc, nn.Linear(enc.out_dim, 2)
    def forward(self, x): return self.head(self.enc(x)['feat'])

class Plain:
    "A torch-only loop over `steps` batches of `x`, `y` with the encoder `name` + a linear head"
    def __init__(self, name, x, y, bs, precision, steps, dev):
        from mtlsyn.model.encoders import build_image_encoder
        torch.manual_seed(0)
        self.model = Head(build_image_encoder(name, in_chans=x.shape[1])).to(dev).to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-3)
        self.batches = [(x[i*bs:(i+1)*bs].to(dev), y[i*bs:(i+1)*bs].to(dev)) for i in range(steps)]
        self.dt, self.dev = dict(fp32=None, bf16=torch.bfloat16)[precision], torch.device(dev)
    def step(self, xb, yb):
        with torch.autocast(self.dev.type, dtype=self.dt or torch.float32, enabled=self.dt is not None):
            loss = nn.functional.cross_entropy(self.model(xb).float(), yb)
        self.opt.zero_grad(set_to_none=True); loss.backward(); self.opt.step()
    def epoch(self):
        for xb, yb in self.batches: self.step(xb, yb)
        if self.dev.type == 'cuda': torch.cuda.synchronize()
    def flops(self)->int:
        xb, yb = self.batches[0]
        with FlopCounterMode(display=False) as fc: self.step(xb, yb)
        return fc.get_total_flops()

class SkipValid(Callback):
    "No validation pass: only the training phase is measured"
    def before_validate(self): raise CancelValidException()

class Mtl:
    def __init__(self, name, dls, info, precision, cpu):
        from mtlsyn.model.vlm import build_vlm
        from mtlsyn.learner import mtl_learner
        torch.manual_seed(0)
        self.tt = TrainTime(cpu)
        self.learn = mtl_learner(dls, build_vlm(name, None, ('classify',), info=info), 'equal', precision=precision,
                                 channels_last=True, select_best=False, metrics=False, cbs=[self.tt, SkipValid()])
        self.n_img = sum(len((b[0] if isinstance(b, (tuple, list)) else b)['image']) for b in dls.train)
    def epoch(self):
        with self.learn.no_logging(), self.learn.no_bar(): self.learn.fit(1)
        return self.tt.times[-1]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=3); ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--bs', type=int, default=128); ap.add_argument('--mm-reps', type=int, default=10)
    ap.add_argument('--precision', default='bf16', choices=['bf16', 'fp32']); ap.add_argument('--encoders', nargs='+', default=ENCODERS)
    ap.add_argument('--threads', type=int, default=threads_from_env()); ap.add_argument('--no-write', action='store_true')
    a = ap.parse_args(); setup_threads(a.threads)
    cpu = not torch.cuda.is_available(); dev = 'cpu' if cpu else 'cuda'
    mach = machine(a.threads)
    peak = {k: matmul_peak(dt, reps=a.mm_reps, cpu=cpu) for k, dt in (('fp32', torch.float32), ('bf16', torch.bfloat16))}
    print(f'{mach}; matmul peak (best of {a.mm_reps} 4096²): fp32 {peak["fp32"]:.0f} GFLOP/s, bf16 {peak["bf16"]:.0f} GFLOP/s', flush=True)
    split, dls, x, y = pneumonia_subset((a.steps*a.bs + 1)//2, a.bs)
    x, y = x[:a.steps*a.bs], y[:a.steps*a.bs]
    clock = 'process CPU time' if cpu else 'wall time'
    rows = []
    for name in a.encoders:
        try:
            p, m = Plain(name, x, y, a.bs, a.precision, a.steps, dev), Mtl(name, dls, split.info, a.precision, cpu)
        except Exception as e:
            import traceback; traceback.print_exc(); print(f'{name}: skipped ({type(e).__name__}: {e})'); rows.append(f'| {name} | skipped: {type(e).__name__} | | | | | |'); continue
        fl = p.flops()
        tp, tm = [], []
        for r in range(a.rounds + 1):
            for k in (('p', 'm') if r % 2 == 0 else ('m', 'p')):
                if k == 'p':
                    with Clock(cpu) as c: p.epoch()
                    t = c.s
                else: t = m.epoch()[0]
                if r: (tp if k == 'p' else tm).append(t)
        n_img = a.steps*a.bs
        ips_p, ips_m = n_img/float(np.median(tp)), m.n_img/float(np.median(tm))
        gp, gm = fl/a.bs*ips_p/1e9, fl/a.bs*ips_m/1e9
        pk = peak[a.precision]
        rows.append(f'| {name} | {fl/a.bs/1e9:.3f} | {ips_p:.0f} | {ips_m:.0f} | {gp:.1f} ({gp/pk:.1%}) | {gm:.1f} ({gm/pk:.1%}) | {ips_m/ips_p:.3f} |')
        print(rows[-1], flush=True)
    body = '\n'.join([
        '## Throughput against the matrix-multiply peak', '',
        f'Peak on {mach.split(",")[0]}: fp32 {peak["fp32"]:.0f} GFLOP/s, bf16 {peak["bf16"]:.0f} GFLOP/s (best of {a.mm_reps} 4096² matmuls, this run). '
        f'Training in {a.precision} with channels_last; share = achieved GFLOP/s / the {a.precision} peak.', '',
        '| encoder | train GFLOP/img (fwd+bwd) | plain img/s | mtlsyn img/s | plain GFLOP/s (share of peak) | mtlsyn GFLOP/s (share of peak) | mtlsyn/plain throughput |',
        '|---|---|---|---|---|---|---|', *rows, '',
        f'Command: `OMP_NUM_THREADS={a.threads} python benchmarks/throughput.py --steps {a.steps} --rounds {a.rounds} --mm-reps {a.mm_reps}`; {today()}; {mach}. '
        f'{a.steps} steps of bs {a.bs} per epoch (28-px PneumoniaMNIST), median of {a.rounds} alternating rounds after a warm-up, {clock}; '
        f'FLOPs of one training step from torch.utils.flop_counter (matmuls and convolutions only, as it counts). mtlsyn: mtl_learner, no instruments, '
        f'training phase only. Few steps: a quick, cheap estimate.'])
    print('\n' + body)
    if not a.no_write: write_section('throughput', body)

if __name__ == '__main__': main()
