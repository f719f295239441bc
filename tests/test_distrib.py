"Data-parallel training on two CPU processes (gloo) through `accelerate launch`, the same path as on several GPUs"
import json, os, socket, subprocess, sys, textwrap
from pathlib import Path
import pytest

# The exact command (documented in nbs/05c_learner.distrib.ipynb), run with CUDA_VISIBLE_DEVICES= (empty) so it is CPU-only:
#   CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no train.py accelerate's `--cpu` flag alone starts ONE process
# (multi-CPU there needs mpirun); `--multi_gpu` starts `--num_processes` processes through torchrun, and on a
# machine without CUDA mtlsyn's `distrib_ctx` runs them on the gloo backend.
CMD = "accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no --main_process_port {port} {script} {out}"

SCRIPT = textwrap.dedent('''
    import sys, json, os, torch
    torch.set_num_threads(1)
    from fastai.torch_core import set_seed
    from mtlsyn.learner import mtl_learner, distrib_ctx
    from mtlsyn.test_utils import toy_dls
    from mtlsyn.model.vlm import build_vlm
    from fastai.distributed import rank_distrib, num_distrib
    set_seed(0)
    dls = toy_dls(n_train=64, n_valid=32, size=16, bs=8)
    model = build_vlm('small-cnn', None, ('classify','reconstruct'), info=dls.info, width=8)
    learn = mtl_learner(dls, model, 'equal', lr=3e-3)
    with learn.no_bar(), distrib_ctx(learn):
        learn.fit(3); backend = torch.distributed.get_backend()
    assert not torch.distributed.is_initialized(), 'distrib_ctx leaves no process group behind'
    res = dict(rank=rank_distrib(), world=num_distrib(), backend=backend,
               metrics=list(learn.recorder.metric_names), values=[[float(x) for x in v] for v in learn.recorder.values],
               n_steps=len(learn.mtl.history), test=learn.evaluate())
    json.dump(res, open(os.path.join(sys.argv[1], f'rank{rank_distrib()}.json'), 'w'))
''')

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.mark.timeout(120)
def test_two_cpu_processes_train_to_the_end(tmp_path):
    script = tmp_path/'train.py'; script.write_text(SCRIPT)
    acc = Path(sys.executable).parent/'accelerate'
    cmd = CMD.format(port=_free_port(), script=script, out=tmp_path).split()
    cmd[0] = str(acc)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr[-3000:]
    res = [json.loads((tmp_path/f'rank{i}.json').read_text()) for i in range(2)]
    for i, x in enumerate(res):
        assert (x['rank'], x['world'], x['backend']) == (i, 2, 'gloo')
        assert len(x['values']) == 3                       # all epochs ran
        assert x['n_steps'] == 3*4                         # 64 images / bs 8 / 2 processes = 4 steps an epoch each
    assert res[0]['values'] == res[1]['values']            # metrics gathered over both shards agree
    vals = res[0]['values']
    assert vals[-1][0] < vals[0][0]                        # train loss fell
    assert 'classify_auc' in res[0]['metrics'] and 0 <= res[0]['test']['classify_auc'] <= 1
