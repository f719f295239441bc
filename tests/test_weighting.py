"Every loss weighting trains a tiny two-task model in fp32 and bf16, and each shows the behaviour that makes it itself"
import math
from types import SimpleNamespace
import pytest, torch, torch.nn as nn
from fastai.torch_core import set_seed
from mtlsyn.core import MtlsynError
from mtlsyn.mtl.weighting import weightings, DWA, FAMO, GradNorm, JDAggregation
from mtlsyn.learner import mtl_learner
from mtlsyn.test_utils import toy_dls
from mtlsyn.model.vlm import build_vlm

torch.set_num_threads(1)

def test_at_least_as_many_weightings_as_libmtl():
    assert len(weightings) >= 23
    assert {'equal','uncertainty','dwa','rlw','gradnorm','famo','upgrad','mgda','pcgrad','cagrad','nash-mtl','imtl-g',
            'aligned-mtl','gradvac','graddrop','dualproj','config','fairgrad'} <= set(weightings.names())
    with pytest.raises(MtlsynError, match='choose one of'): weightings.build('pc-grad')

@pytest.fixture(scope='module')
def dls(): return toy_dls(n_train=32, n_valid=16, n_classes=2, size=12, bs=16, noise=0.8)

@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
@pytest.mark.parametrize('name', weightings.names())
def test_every_weighting_trains_without_nan(name, precision, dls):
    set_seed(0)
    model = build_vlm('small-cnn', None, ('classify','reconstruct'), info=dls.info, width=4)
    learn = mtl_learner(dls, model, name, lr=1e-2, precision=precision, metrics=False, select_best=False)
    with learn.no_bar(), learn.no_logging(): learn.fit(4)
    h = learn.mtl.history
    assert len(h) == 8
    for s in h: assert all(math.isfinite(v) for v in s['losses'].values())
    assert all(math.isfinite(float(v[0])) and math.isfinite(float(v[1])) for v in learn.recorder.values)   # train/valid loss
    mean = lambda e: sum(sum(s['losses'].values()) for s in h if s['epoch']==e) / 2
    assert mean(3) < mean(0), f"{name} {precision}: task losses did not fall ({mean(0):.3f} -> {mean(3):.3f})"
    assert set(learn.task_weights) == {'classify','reconstruct'}

def test_uncertainty_gives_the_noisier_task_the_smaller_weight():
    torch.manual_seed(0)
    w = weightings.build('uncertainty').setup(['clean','noisy'])
    theta = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([theta, *w.parameters()], lr=0.05)
    for _ in range(300):
        x = torch.randn(64)
        y_clean, y_noisy = 2*x + 0.1*torch.randn(64), 2*x + 1.0*torch.randn(64)
        losses = dict(clean=((theta*x - y_clean)**2).mean(), noisy=((theta*x - y_noisy)**2).mean())
        loss, weights = w(losses); opt.zero_grad(); loss.backward(); opt.step()
    assert weights['noisy'] < weights['clean'] / 5

def test_dwa_raises_the_weight_of_the_slowest_falling_task():
    w = DWA().setup(['fast','slow'])
    losses = dict(fast=torch.tensor(.2), slow=torch.tensor(.9))
    test = lambda: w(losses)[1]
    assert test() == dict(fast=.5, slow=.5)                  # equal until two epochs are known
    w.epoch_end(dict(fast=1., slow=1.)); w.epoch_end(dict(fast=.4, slow=.95))
    assert test()['slow'] > test()['fast']

def test_rlw_draws_new_weights_that_sum_to_one():
    w = weightings.build('rlw').setup(['a','b'])
    ws = [w(dict(a=torch.tensor(1.), b=torch.tensor(1.)))[1] for _ in range(3)]
    assert all(abs(sum(x.values()) - 1) < 1e-6 for x in ws) and ws[0] != ws[1]

def test_gls_weights_are_inversely_proportional_to_the_losses():
    loss, w = weightings.build('gls').setup(['a','b'])(dict(a=torch.tensor(1.), b=torch.tensor(4.)))
    assert torch.isclose(loss, torch.tensor(2.)) and abs(w['a']/w['b'] - 4) < 1e-5

def test_imtl_l_equalises_the_scaled_losses():
    w = weightings.build('imtl-l').setup(['a','b'])
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    losses = dict(a=torch.tensor(0.1), b=torch.tensor(5.))
    for _ in range(400): loss, ws = w(losses); opt.zero_grad(); loss.backward(); opt.step()
    assert abs(ws['a']*0.1 - ws['b']*5.) < 0.05

def test_stch_weights_the_task_that_rose_most():
    w = weightings.build('stch').setup(['a','b'])
    w(dict(a=torch.tensor(1.), b=torch.tensor(1.)))
    _, ws = w(dict(a=torch.tensor(.5), b=torch.tensor(2.)))
    assert ws['b'] > ws['a']

def _fake(model, losses):
    return SimpleNamespace(loss_func=SimpleNamespace(last=losses), model=model)

def test_gradnorm_lowers_the_weight_of_the_task_with_larger_gradients():
    torch.manual_seed(0)
    enc = nn.Linear(4, 4); model = SimpleNamespace(image_encoder=enc)
    w = GradNorm(lr=0.05).setup(['small','large'], model)
    x = torch.randn(32, 4)
    for _ in range(50):
        h = enc(x)
        losses = dict(small=h[:, 0].pow(2).mean(), large=10*h[:, 1].pow(2).mean())
        w(losses); w.before_backward(_fake(model, losses))
    _, ws = w(losses)
    assert ws['large'] < ws['small'] and abs(sum(ws.values()) - 1) < 1e-6

def test_famo_moves_weight_to_the_task_whose_loss_fell_least():
    w = FAMO(lr=0.1).setup(['fast','slow'])
    for _ in range(10):
        w(dict(fast=torch.tensor(1.), slow=torch.tensor(1.)))
        w.update(torch.tensor([0.5, 0.99]))
    z = torch.softmax(w.xi.detach(), 0)
    assert z[1] > z[0]

class _Shared(nn.Module):
    "A 'model' whose shared parameter p is its own feature: the Jacobian of the losses is the hand-made gradients"
    def __init__(self):
        super().__init__(); self.image_encoder = nn.Module(); self.image_encoder.p = nn.Parameter(torch.zeros(2)); self.tasks = nn.ModuleDict()

def _jd_grad(name, G):
    m = _Shared(); w = weightings.build(name).setup(['a','b'], m)
    m.last_shared = m.image_encoder.p * 1.
    losses = dict(a=G[0] @ m.last_shared, b=G[1] @ m.last_shared)
    assert w.before_backward(_fake(m, losses)) is True            # the adapter replaced the backward pass
    return m.image_encoder.p.grad, w

def test_pcgrad_removes_the_conflicting_component():
    G = torch.tensor([[2., 1.], [-1., 0.]])                       # opposing task gradients
    g, _ = _jd_grad('pcgrad', G)
    # each gradient projected onto the normal plane of the other, then summed
    g1 = G[0] - (G[0]@G[1])/(G[1]@G[1])*G[1]; g2 = G[1] - (G[1]@G[0])/(G[0]@G[0])*G[0]
    assert torch.allclose(g, g1+g2, atol=1e-5)
    assert g @ G[0] > 0 and g @ G[1] > 0 and G.mean(0) @ G[1] < 0

def test_mgda_gives_the_min_norm_common_descent_direction():
    G = torch.tensor([[1., 0.], [0., 1.]])
    g, w = _jd_grad('mgda', G)
    assert torch.allclose(g, torch.tensor([.5, .5]), atol=1e-3) and w.last_w == pytest.approx([.5, .5], abs=1e-3)

def test_upgrad_never_conflicts_with_any_task():
    G = torch.tensor([[3., 1.], [-1., 0.2]])
    g, _ = _jd_grad('upgrad', G)
    assert (G @ g >= -1e-6).all()

def test_the_torchjd_adapter_passes_keyword_arguments_to_its_aggregator():
    assert repr(weightings.build('cagrad', c=0.2).setup(['a', 'b']).agg).startswith('CAGrad(c=0.2,')
    assert repr(weightings.build('cagrad').setup(['a', 'b']).agg).startswith('CAGrad(c=0.4,')    # the registered default
    with pytest.raises(MtlsynError, match="'mgda' rejects the keyword arguments foo"): weightings.build('mgda', foo=1).setup(['a', 'b'])
