"""mtlsyn's diffusion generator against diffusers on the same UNet and scheduler: fit images/s and DDIM sampling images/s.

Fit: `Diffusion(config, train_steps=N).fit(split)` (class-conditional `UNet2DModel`, DDPM noise schedule, AdamW,
gradient clipping, EMA, one checkpoint at the end) against the training loop of diffusers' own example
(`examples/unconditional_image_generation`: `DDPMScheduler.add_noise`, `unet(...).sample`, MSE, AdamW, clipping,
`diffusers.training_utils.EMAModel`) on the same UNet configuration, scheduler, batch size and images; diffusers
ships no training pipeline. Sampling: `ddim_sample` (guidance 1, i.e. one UNet call per step, the null class)
against `DDIMPipeline` on the same UNet (the null class bound as its label) and `DDIMScheduler`, η = 0, same steps.
Alternating, `--rounds` rounds after a warm-up; images/s from process CPU time on a CPU. 28-px phantoms.

    OMP_NUM_THREADS=1 python benchmarks/diffusion.py [--config cpu] [--train-steps 8] [--n-sample 32] [--ddim-steps 10] [--no-write]
"""
from __future__ import annotations
import argparse, tempfile, warnings
import numpy as np
warnings.filterwarnings('ignore')
from _common import threads_from_env, setup_threads, machine, today, Clock, write_section
import torch
import torch.nn.functional as F

def mtlsyn_fit(split, cfg, steps, cpu)->float:
    from mtlsyn.augment.diffusion import Diffusion
    with tempfile.TemporaryDirectory() as d:
        g = Diffusion(cfg, device='cpu' if cpu else 'cuda', progress=False, ckpt_dir=d, train_steps=steps, ckpt_every=10**9)
        with Clock(cpu) as c: g.fit(split)
    return c.s

def diffusers_fit(split, cfg, steps, cpu)->float:
    "The training loop of diffusers' unconditional example, class-conditioned with the same UNet and schedule"
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel
    from mtlsyn.augment.diffusion import diffusion_configs, build_unet, to_model, noise_schedule
    c = diffusion_configs[cfg]; dev = 'cpu' if cpu else 'cuda'
    x0 = to_model(split.labeled.images); y0 = torch.as_tensor(np.asarray(split.labeled.labels).reshape(-1), dtype=torch.long)
    n_cls = len(split.info.classes)
    with Clock(cpu) as clk:
        torch.manual_seed(0)
        unet = build_unet(n_cls, in_channels=x0.shape[1], size=x0.shape[2], **c).to(dev)
        ema = EMAModel(unet.parameters(), decay=c['ema_decay'], use_ema_warmup=True)
        opt = torch.optim.AdamW(unet.parameters(), lr=c['lr'], weight_decay=0.0)
        sched = DDPMScheduler(**noise_schedule)
        lr = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1, (i+1)/c['warmup']))
        unet.train()
        for i in range(steps):
            idx = torch.randint(0, len(x0), (c['batch_size'],))
            x, y = x0[idx].to(dev), y0[idx].to(dev)
            y[torch.rand(len(y), device=dev) < c['p_uncond']] = n_cls
            noise = torch.randn_like(x); t = torch.randint(0, sched.config.num_train_timesteps, (len(x),), device=dev)
            loss = F.mse_loss(unet(sched.add_noise(x, noise, t), t, class_labels=y).sample, noise)
            opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0); opt.step(); lr.step()
            ema.step(unet.parameters()); loss.item()
        if not cpu: torch.cuda.synchronize()
    return clk.s

def sampler_pair(split, cfg, cpu):
    "The same freshly initialised UNet and schedule for `ddim_sample` and `DDIMPipeline` (the null class bound as the label)"
    from diffusers import UNet2DModel, DDIMPipeline, DDIMScheduler
    from mtlsyn.augment.diffusion import diffusion_configs, build_unet, noise_schedule
    n_cls = len(split.info.classes); dev = 'cpu' if cpu else 'cuda'
    torch.manual_seed(0)
    unet = build_unet(n_cls, in_channels=1, size=28, **diffusion_configs[cfg]).to(dev).eval()
    def fwd(sample, timestep, *a, **kw):
        kw.setdefault('class_labels', torch.full((len(sample),), n_cls, device=sample.device, dtype=torch.long))
        return UNet2DModel.forward(unet, sample, timestep, *a, **kw)
    pipe_unet = unet; pipe = DDIMPipeline(unet=pipe_unet, scheduler=DDIMScheduler(**noise_schedule, clip_sample=True, set_alpha_to_one=True))
    pipe.set_progress_bar_config(disable=True)
    return unet, pipe, fwd, n_cls

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--config', default='cpu'); ap.add_argument('--train-steps', type=int, default=8)
    ap.add_argument('--n-sample', type=int, default=32); ap.add_argument('--ddim-steps', type=int, default=10)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--threads', type=int, default=threads_from_env()); ap.add_argument('--no-write', action='store_true')
    a = ap.parse_args(); setup_threads(a.threads)
    cpu = not torch.cuda.is_available(); mach = machine(a.threads)
    from mtlsyn.data.all import load_benchmark
    from mtlsyn.augment.diffusion import diffusion_configs, ddim_sample
    split = load_benchmark('phantom', size=28, n_train=256, n_val=32, n_test=32)
    bs = diffusion_configs[a.config]['batch_size']
    unet, pipe, fwd, n_cls = sampler_pair(split, a.config, cpu)
    dev = 'cpu' if cpu else 'cuda'
    def s_mtl():
        with Clock(cpu) as c, torch.no_grad():
            ddim_sample(unet, torch.full((a.n_sample,), n_cls), n_cls, (1, 28, 28), a.ddim_steps, 1.0, torch.Generator().manual_seed(0), device=dev)
        return c.s
    def s_diff():
        unet.forward = fwd
        try:
            with Clock(cpu) as c: pipe(batch_size=a.n_sample, num_inference_steps=a.ddim_steps, eta=0.0, output_type='np', generator=torch.Generator(dev).manual_seed(0))
        finally: del unet.forward
        return c.s
    fits = {'mtlsyn': lambda: mtlsyn_fit(split, a.config, a.train_steps, cpu), 'diffusers': lambda: diffusers_fit(split, a.config, a.train_steps, cpu)}
    samps = {'mtlsyn': s_mtl, 'diffusers': s_diff}
    t = {k: [] for k in ('fit mtlsyn', 'fit diffusers', 'sample mtlsyn', 'sample diffusers')}
    for r in range(a.rounds + 1):
        order = ('mtlsyn', 'diffusers') if r % 2 == 0 else ('diffusers', 'mtlsyn')
        for k in order:
            s = fits[k]()
            if r: t[f'fit {k}'].append(s)
        for k in order:
            s = samps[k]()
            if r: t[f'sample {k}'].append(s)
        if r: print(f'round {r}: ' + ', '.join(f'{k} {v[-1]:.2f} s' for k, v in t.items()), flush=True)
    fit_ratio = float(np.median([d/m for m, d in zip(t['fit mtlsyn'], t['fit diffusers'])]))     # speed ratio = time(diffusers)/time(mtlsyn)
    samp_ratio = float(np.median([d/m for m, d in zip(t['sample mtlsyn'], t['sample diffusers'])]))
    ips = lambda k, n: n/float(np.median(t[k]))
    nf, ns = a.train_steps*bs, a.n_sample
    body = '\n'.join(['## Synthesis: mtlsyn against diffusers', '',
        f'diffusers ratio: fit {fit_ratio:.2f}×, DDIM sampling {samp_ratio:.2f}× diffusers\' speed (goal ≥ 0.95×)', '',
        '| | mtlsyn images/s | diffusers images/s | mtlsyn / diffusers speed |', '|---|---|---|---|',
        f"| fit ({a.train_steps} steps × bs {bs}) | {ips('fit mtlsyn', nf):.1f} | {ips('fit diffusers', nf):.1f} | {fit_ratio:.3f}× |",
        f"| DDIM sampling ({a.n_sample} images, {a.ddim_steps} steps) | {ips('sample mtlsyn', ns):.1f} | {ips('sample diffusers', ns):.1f} | {samp_ratio:.3f}× |", '',
        f'Command: `OMP_NUM_THREADS={a.threads} python benchmarks/diffusion.py --config {a.config} --train-steps {a.train_steps} --n-sample {a.n_sample} '
        f'--ddim-steps {a.ddim_steps} --rounds {a.rounds}`; {today()}; {mach}. UNet: diffusion config {a.config!r} {diffusion_configs[a.config]["block_out_channels"]}, '
        f'28-px phantoms (256 labeled images). Fit: mtlsyn `Diffusion.fit` (incl. model build and one final checkpoint) vs diffusers\' example training loop '
        f'(incl. model build, EMAModel); sampling: `ddim_sample` with guidance 1 vs `DDIMPipeline` (output_type np). Medians over {a.rounds} alternating rounds '
        f'after a warm-up, {"process CPU time" if cpu else "wall time"}.'])
    print('\n' + body)
    if not a.no_write: write_section('diffusion', body)

if __name__ == '__main__': main()
