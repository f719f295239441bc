"Behavioural tests of the pretext tasks (issue 13): each learns something on phantoms after a short fit"
import torch
from mtlsyn.core import set_seed
from mtlsyn.data.phantom import load_phantom
from mtlsyn.model.vlm import build_vlm
from mtlsyn.model.pretext import nt_xent, pair_hits

def _images(n_train=160):
    sp = load_phantom(size=28, budget='all', n_train=n_train, n_val=64, n_test=16)
    f = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float()/255
    x, xv = f(sp.labeled.images), f(sp.val.images)
    m, s = x.mean(), x.std()
    return sp.info, (x - m)/s, (xv - m)/s

def _fit(task, steps, lr=3e-3, bs=32, seed=0):
    "Train a small-cnn with the one pretext `task` for `steps`; its model, held-out images, and the first and last 5-step mean losses"
    set_seed(seed)
    info, x, xv = _images()
    m = build_vlm('small-cnn', text_encoder=None, tasks=[task], info=info)
    opt, ls = torch.optim.Adam(m.parameters(), lr), []
    for _ in range(steps):
        b = dict(image=x[torch.randint(0, len(x), (bs,))])
        loss = m.tasks[task].loss(m(b)[task], b); opt.zero_grad(); loss.backward(); opt.step(); ls.append(loss.item())
    return m.eval(), xv, sum(ls[:5])/5, sum(ls[-5:])/5

def test_rotation_beats_chance():
    m, xv, _, _ = _fit('rotation', 40)
    with torch.no_grad(): acc = m.tasks['rotation'].metrics([m(dict(image=xv))['rotation']], [{}])['acc']
    assert acc > 0.4, f"rotation accuracy {acc:.2f} on held-out phantoms is not above chance (0.25)"

def test_masked_image_loss_falls():
    m, xv, first, last = _fit('masked-image', 40)
    assert last < 0.8*first, f"masked-image loss did not fall: {first:.3f} -> {last:.3f}"
    with torch.no_grad(): mse = m.tasks['masked-image'].metrics([m(dict(image=xv))['masked-image']], [dict(image=xv)])['mse']
    assert mse < first

def test_simclr_loss_falls_and_pairs_closer():
    m, xv, first, last = _fit('simclr', 40)
    assert last < first, f"simclr loss did not fall: {first:.3f} -> {last:.3f}"
    with torch.no_grad(): o = m(dict(image=xv[:32]))['simclr']
    z1, z2 = torch.nn.functional.normalize(o['z1'], dim=-1), torch.nn.functional.normalize(o['z2'], dim=-1)
    sim = z1 @ z2.T
    pos, neg = sim.diag().mean(), (sim.sum() - sim.diag().sum())/(len(sim)*(len(sim)-1))
    assert pos > neg, f"positive pairs ({pos:.3f}) are not closer than negatives ({neg:.3f})"
    assert pair_hits(o['z1'], o['z2']).float().mean() > 1/63

def test_nt_xent_prefers_matching_views():
    z = torch.randn(16, 8)
    assert nt_xent(z, z) < nt_xent(z, torch.randn(16, 8))

def test_pretext_tasks_registered_with_supervised():
    from mtlsyn.model.tasks import tasks
    assert {'rotation', 'masked-image', 'simclr'} <= set(tasks.names())
    info, x, _ = _images(40)
    m = build_vlm('small-cnn', text_encoder=None, tasks=['classify', 'rotation', 'masked-image', 'simclr'], info=info)
    out = m(dict(image=x[:8]))
    assert set(out) == {'classify', 'rotation', 'masked-image', 'simclr'}
