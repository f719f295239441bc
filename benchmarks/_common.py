"Shared helpers of the benchmarks: the machine line, timing clocks, PneumoniaMNIST subset, and section-wise writes of RESULTS.md"
from __future__ import annotations
import os, sys, time, datetime, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT/'benchmarks'/'RESULTS.md'
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

def threads_from_env(default:int=1)->int:
    "Torch threads for a benchmark: `OMP_NUM_THREADS` if set, else `default` (the machine is shared: never oversubscribe)"
    return int(os.environ.get('OMP_NUM_THREADS', default))

def setup_threads(n:int):
    import torch
    os.environ['OMP_NUM_THREADS'] = str(n); torch.set_num_threads(n)

def machine(threads:int)->str:
    "The CPU's name and thread count (or the GPU's name), and the load average, for a results line"
    import torch
    from mtlsyn.core import cpu_name
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    dev = f'GPU {torch.cuda.get_device_name()}' if torch.cuda.is_available() else f'CPU {cpu_name()}'
    return f'{dev}, {threads} torch thread(s), {os.cpu_count()} cores, 1-min load {load:.1f} at start, torch {torch.__version__}'

def today()->str: return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')

class Clock:
    "Wall and process-CPU seconds of a block; `.s` is the one `cpu` selects (CPU time on a shared CPU, wall on a GPU)"
    def __init__(self, cpu:bool): self.cpu = cpu
    def __enter__(self): self.w0, self.c0 = time.perf_counter(), time.process_time(); return self
    def __exit__(self, *a):
        self.wall, self.cput = time.perf_counter()-self.w0, time.process_time()-self.c0
        self.s = self.cput if self.cpu else self.wall

def write_section(name:str, body:str, path:Path=RESULTS):
    "Replace the text between `<!-- bench:name -->` and `<!-- /bench:name -->` in `path` (append the section if absent)"
    from mtlsyn.core import atomic_write
    text = path.read_text() if path.exists() else '# Benchmark results\n'
    a, b = f'<!-- bench:{name} -->', f'<!-- /bench:{name} -->'
    block = f'{a}\n{body.strip()}\n{b}'
    pat = re.compile(re.escape(a) + r'.*?' + re.escape(b), re.S)
    text = pat.sub(lambda m: block, text) if pat.search(text) else text.rstrip() + '\n\n' + block + '\n'
    atomic_write(path, text)

def pneumonia_subset(n_per_class:int=512, bs:int=128, seed:int=0, benchmark:str='pneumoniamnist'):
    "mtlsyn's loaders of a class-balanced subset of `benchmark` (`n_per_class` train images per class) and the same images as normalised tensors"
    import numpy as np, torch
    from mtlsyn.data.all import load_benchmark
    from mtlsyn.data.loaders import dataloaders
    kw = dict(n_train=4*n_per_class, n_val=256, n_test=64) if benchmark == 'phantom' else dict(root=os.environ.get('MEDMNIST_ROOT'))
    split = load_benchmark(benchmark, size=28, budget=n_per_class, seed=seed, **kw)
    dls = dataloaders(split, bs=bs, seed=seed, device='cpu' if not torch.cuda.is_available() else None)
    x = torch.from_numpy(np.asarray(split.labeled.images)).float().div(255)
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    m, s = (torch.tensor(dls.stats[k]).view(1, -1, 1, 1) for k in ('mean', 'std'))
    x = (x - m)/s   # the normalisation mtlsyn's loaders apply
    return split, dls, x, torch.from_numpy(np.asarray(split.labeled.labels).reshape(-1).astype(np.int64))
