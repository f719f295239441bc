"Instruments: activation memory against hand counts, callback ordering with probe callbacks, run-record keys, clean-up"
import json, math
import pytest, torch
from torch import nn
from fastai.basics import Callback, CancelFitException
from fastai.learner import Recorder
from mtlsyn.callback.convergence import ConvergenceCallback
from mtlsyn.callback.memory import MemoryCallback, SavedTensorMeter, static_memory
from mtlsyn.callback.throughput import ThroughputCallback
from mtlsyn.learner import mtl_learner
from mtlsyn.model.vlm import build_vlm
from mtlsyn.test_utils import tiny_learner, toy_dls

torch.set_num_threads(1)

def _close(measured, expected, tol=0.10): return abs(measured - expected) <= tol*expected

def _step(model, x, **meter_kw):
    with SavedTensorMeter(model, **meter_kw) as m: loss = model(x).float().sum()
    loss.backward()
    return m

# ---------------------------------------------------------------- activation memory vs hand counts
def test_activation_memory_mlp_matches_hand_count():
    "MLP 784-512-256-10, batch 32, fp32: the saved input, and each hidden ReLU output once (the next Linear re-saves it)"
    mlp = nn.Sequential(nn.Linear(784,512), nn.ReLU(), nn.Linear(512,256), nn.ReLU(), nn.Linear(256,10))
    B = 32
    hand = 4*B*(784 + 512 + 256)          # input x, relu1 output, relu2 output; weights are parameters
    m = _step(mlp, torch.randn(B, 784))
    assert _close(m.total_bytes, hand), (m.total_bytes, hand)
    assert m.total_bytes == hand           # in fact exact

def test_activation_memory_cnn_matches_hand_count():
    "Small CNN, batch 16 of 1x28x28: inputs of each conv, ReLU outputs, max-pool int64 indices, the flattened features"
    cnn = nn.Sequential(nn.Conv2d(1,8,3,padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8,16,3,padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(16*7*7, 10))
    B = 16
    hand = (4*B*1*28*28          # conv1 input (for its weight gradient)
            + 4*B*8*28*28        # relu1 output (also the input max-pool 1 saves: one storage)
            + 8*B*8*14*14        # max-pool 1 indices, int64
            + 4*B*8*14*14        # pool1 output = conv2 input
            + 4*B*16*14*14       # relu2 output (= max-pool 2 input)
            + 8*B*16*7*7         # max-pool 2 indices
            + 4*B*16*7*7)        # pool2 output, flattened (a view) and saved by the Linear
    m = _step(cnn, torch.randn(B, 1, 28, 28))
    assert _close(m.total_bytes, hand), (m.total_bytes, hand)

def test_activation_memory_inplace_and_autocast_rules():
    "In-place ReLU adds nothing; bf16 autocast halves activations and adds the weight copies, reported apart"
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(64,128), nn.ReLU(), nn.Linear(128,8))
    b = nn.Sequential(nn.Linear(64,128), nn.ReLU(inplace=True), nn.Linear(128,8))
    x = torch.randn(16, 64)
    assert _step(a, x).total_bytes == _step(b, x).total_bytes == 4*16*(64+128)
    with torch.autocast('cpu', dtype=torch.bfloat16): m = _step(a, x)
    assert m.param_copies_bytes == 2*128*8
    assert m.total_bytes == 2*16*(64+128) + 2*128*8

def test_static_memory_adam():
    "Parameters, gradients and Adam's two moments (+ a scalar step per tensor) in bytes"
    lin = nn.Linear(300, 20); opt = torch.optim.Adam(lin.parameters())
    lin(torch.randn(2,300)).sum().backward(); opt.step()
    n = 300*20 + 20
    assert static_memory(lin, opt) == dict(params=4*n, grads=4*n, optim=2*4*n + 2*4)

# ---------------------------------------------------------------- callbacks on learners
CONTRACT = ['conv_classify_epoch_to_target', 'conv_classify_step_to_target', 'conv_classify_samples_to_target',
            'conv_classify_flops_to_target', 'conv_classify_seconds_to_target', 'conv_classify_aulc', 'best_epoch',
            'mem_peak_rss_mb', 'mem_cuda_peak_alloc_mb', 'mem_cuda_peak_reserved_mb', 'mem_params_mb', 'mem_grads_mb',
            'mem_optim_mb', 'mem_activations_mb', 'thr_img_per_s', 'thr_step_ms_p50', 'thr_step_ms_p95',
            'thr_data_wait_share', 'time_fit_s']

def _fit(learn, n, cbs):
    with learn.no_logging(), learn.no_bar(): learn.fit(n, cbs=cbs)
    return {k:v for cb in cbs if hasattr(cb, 'record') for k,v in cb.record().items()}

@pytest.fixture(scope='module')
def mtl_record():
    learn = tiny_learner(n=256, bs=32)
    cbs = [ConvergenceCallback(), MemoryCallback(), ThroughputCallback()]
    return learn, cbs, _fit(learn, 3, cbs)

def test_records_have_the_contract_keys(mtl_record):
    "Every run-record key of the contract is there, per task and per part too, and the record is JSON"
    learn, cbs, r = mtl_record
    missing = [k for k in CONTRACT if k not in r]
    assert not missing, missing
    for part in ('image_encoder', 'classify', 'reconstruct'):
        assert r[f'mem_{part}_activations_mb'] > 0 and r[f'time_{part}_ms'] > 0
    assert 'conv_reconstruct_epoch_to_target' in r      # the other task is tracked too
    json.dumps(r)                                # flat and serialisable
    on_cuda = next(learn.model.parameters()).device.type == 'cuda'
    assert (r['mem_cuda_peak_alloc_mb'] is not None) == on_cuda   # CUDA peaks exactly when the model trained on a GPU

def test_parts_add_up(mtl_record):
    "Per-part activation bytes plus the unattributed rest make the total; per-part time is below the step time"
    learn, (conv, mem, thr), r = mtl_record
    bp = mem.act.by_part()
    assert sum(bp.values()) == mem.act.total_bytes
    parts_ms = sum(r[f'time_{p}_ms'] for p in ('image_encoder','classify','reconstruct'))
    assert parts_ms < 3*r['thr_step_ms_p95']     # probe steps are a bit slower than the timed ones, never 3x

def test_plain_learner_degrades_gracefully():
    "A plain fastai learner over tensors: no per-task keys, everything else present"
    learn = tiny_learner(mtl=False)
    cbs = [ConvergenceCallback('accuracy', higher_is_better={'accuracy': True}), MemoryCallback(), ThroughputCallback()]
    r = _fit(learn, 2, cbs)
    assert r['conv_accuracy_aulc'] is not None and r['mem_activations_mb'] > 0 and r['thr_img_per_s'] > 0
    assert {k for k in r if k.startswith('time_')} == {'time_fit_s'}
    assert {k for k in r if k.endswith('_activations_mb')} == {'mem_activations_mb'}
    assert {k for k in r if k.startswith('conv_')} == {f'conv_accuracy_{f}' for f in
            ('epoch_to_target','step_to_target','samples_to_target','flops_to_target','seconds_to_target','aulc','target','best')} | {'conv_flops_per_sample'}

class Probe(Callback):
    "Records what the instruments have done when its events run"
    def __init__(self, order, conv, mem): self.order,self.conv,self.mem,self.seen = order,conv,mem,[]
    def after_pred(self):
        if self.training and self.train_iter == 0: self.seen.append(('after_pred', self.mem.probing))
    def after_backward(self):
        if self.train_iter == 0: self.seen.append(('after_backward', self.mem.probing))
    def after_epoch(self): self.seen.append(('after_epoch', len(self.conv.history), len(self.recorder.values)))

def test_callback_ordering_with_probes():
    "Convergence reads the recorder after it wrote the epoch; the activation probe covers forward only"
    learn = tiny_learner()
    conv, mem = ConvergenceCallback(), MemoryCallback()
    before = Probe(Recorder.order+0.5, conv, mem); after = Probe(Recorder.order+1.5, conv, mem)
    _fit(learn, 2, [conv, mem, ThroughputCallback(), before, after])
    ep_b = [s for s in before.seen if s[0]=='after_epoch']; ep_a = [s for s in after.seen if s[0]=='after_epoch']
    assert ep_b == [('after_epoch', 0, 1), ('after_epoch', 1, 2)]   # recorder done, convergence not yet
    assert ep_a == [('after_epoch', 1, 1), ('after_epoch', 2, 2)]   # both done
    assert ('after_pred', True) in after.seen and ('after_backward', False) in after.seen
    assert [c.order for c in (ThroughputCallback(), conv, mem)] == [Recorder.order-1, Recorder.order+1, Recorder.order+2]

def test_cancelled_fit_leaves_no_hooks():
    "A fit cancelled in the middle of the probe step leaves no module hooks, no saved-tensor hooks, no FLOP mode"
    class Stop(Callback):
        order = 60
        def after_pred(self):
            if self.training: raise CancelFitException()
    learn = tiny_learner()
    cbs = [ConvergenceCallback(), MemoryCallback(), ThroughputCallback(skip=0)]
    _fit(learn, 1, cbs + [Stop()])
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in learn.model.modules())
    assert hooks == 0
    assert 'loss' not in learn.model.tasks['classify'].__dict__
    assert not cbs[0].flop_probe.active and not cbs[1].probing
    x = torch.randn(4, 3, requires_grad=True)
    with SavedTensorMeter() as m: (x*x).sum()   # a new saved-tensor hook can be pushed and sees only its own
    assert m.total_bytes == 4*4*3

def test_convergence_targets_absolute_and_fraction():
    "An absolute target is used as given, and `per_task=False` tracks only the metric asked for"
    learn = tiny_learner()
    cb = ConvergenceCallback(targets={'classify_auc': 0.5}, per_task=False)
    r = _fit(learn, 3, [cb])
    assert r['conv_classify_target'] == 0.5 and r['conv_classify_epoch_to_target'] == 1
    assert {k for k in r if k.startswith('conv_') and k.endswith('_aulc')} == {'conv_classify_aulc'}

def test_with_the_real_learner():
    "The instruments on mtlsyn's own multi-task learner"
    dls = toy_dls(n_train=64, n_valid=32, bs=16, size=16, masks=False)
    model = build_vlm('small-cnn', text_encoder=None, tasks=('classify',), info=dls.info)
    learn = mtl_learner(dls, model)
    cbs = [ConvergenceCallback(), MemoryCallback(), ThroughputCallback()]
    r = _fit(learn, 2, cbs)
    missing = [k for k in CONTRACT if k not in r]
    assert not missing, missing
    assert r['mem_classify_activations_mb'] > 0 and r['mem_image_encoder_activations_mb'] > 0
    assert r['conv_classify_flops_to_target'] is None or r['conv_classify_flops_to_target'] > 0
