"MultiMix (issue 12): pseudo-labels and pseudo-masks, the input-gradient saliency bridge, label/mask fractions, phantom sites and the cross-domain gap"
from types import SimpleNamespace
import numpy as np, pytest, torch, torch.nn.functional as F
from mtlsyn.core import MtlsynError
from mtlsyn.data.core import load_benchmark
from mtlsyn.data.phantom import load_phantom, phantom_site, SITES
from mtlsyn.data.loaders import dataloaders
from mtlsyn.model.encoders import build_image_encoder
from mtlsyn.model.tasks import Classify, Saliency, BRIDGES
from mtlsyn.model.vlm import build_vlm
from mtlsyn.learner.core import mtl_learner
from mtlsyn.learner.semi import pseudo_labels, pseudo_masks, weak_strong_views, SemiSupervised, _unlabeled_losses
from mtlsyn.study.config import load_study, study_runs
from mtlsyn.study.runner import run_one

torch.set_num_threads(1)
INFO2 = SimpleNamespace(name='toy', task='multi-class', classes=['a', 'b'], multi_label=False, mask_names=['lung', 'lesion'])

# --- pseudo-labelling: only confident predictions become targets

def test_only_confident_predictions_become_pseudo_labels():
    probs = torch.tensor([[.70, .30], [.69, .31], [.2, .8], [.5, .5]])
    lab, ok = pseudo_labels(probs, 0.7)
    assert ok.tolist() == [True, False, True, False]          # 0.70 is confident (≥), 0.69 is not
    assert lab[ok].tolist() == [0, 1]

def test_only_confident_pixels_become_pseudo_masks():
    logits = torch.logit(torch.tensor([.95, .9, .89, .5, .11, .1, .02])).view(1, 1, 1, 7)
    tgt, ok = pseudo_masks(logits, 0.9)
    assert ok.flatten().tolist() == [True, True, False, False, False, True, True]
    assert tgt.flatten()[ok.flatten()].tolist() == [1., 1., 0., 0.]

class _Fixed(torch.nn.Module):
    "A model whose classify logits are fixed per image, and whose strong-view logits are learnable"
    def __init__(self, weak_logits):
        super().__init__(); self.w = weak_logits; self.p = torch.nn.Parameter(torch.zeros(weak_logits.shape[1]))
        self.tasks = torch.nn.ModuleDict(dict(classify=Classify(INFO2, feat_dim=2))); self.calls = 0
    def forward(self, b):
        self.calls += 1
        return dict(classify=self.w + 0*b['image'].sum() if self.calls % 2 else self.p.expand(len(self.w), -1))

def test_unlabeled_loss_uses_exactly_the_confident_images():
    weak = torch.log(torch.tensor([[.9, .1], [.6, .4], [.2, .8]]))   # softmax = these probabilities
    cb = SemiSupervised(dl=None, threshold=0.7, weight=1.0)
    losses, conf = _unlabeled_losses(cb, _Fixed(weak), dict(image=torch.zeros(3, 1, 8, 8)))
    ce = F.cross_entropy(torch.zeros(3, 2), torch.tensor([0, 0, 1]), reduction='none')   # strong logits: zeros
    assert torch.allclose(losses['classify'], (ce*torch.tensor([1., 0, 1])).mean())
    assert conf['classify'] == pytest.approx(2/3)
    cb.threshold = 0.95                                               # nobody is that sure: no target, no loss
    assert _unlabeled_losses(cb, _Fixed(weak), dict(image=torch.zeros(3, 1, 8, 8)))[0]['classify'].item() == 0.

def test_weak_and_strong_views_share_geometry():
    x = torch.zeros(4, 1, 28, 28); x[:, :, 10:18, 10:18] = 1
    g = torch.Generator().manual_seed(0)
    w, s = weak_strong_views(x, max_shift=2, strength=0., cutout=0.1, generator=g)   # no intensity change: strong = weak but the cut-out
    same = (s == w).float().mean()
    assert same > 0.95 and not torch.equal(w, x)

# --- the saliency bridge

def _feats(bridge, seed=0):
    torch.manual_seed(seed)
    enc = build_image_encoder('small-cnn', width=4)
    clf = Classify(INFO2, feat_dim=enc.out_dim)
    sal = Saliency(INFO2, fmap_dim=enc.fmap_dim, bridge=bridge)
    x = torch.randn(3, 1, 28, 28)
    f = dict(enc(x), image=x, encode_image=enc, tasks={'classify': clf}, outs={})
    f['outs']['classify'] = clf(f, {})
    return enc, clf, sal, x, f

def test_decoder_receives_the_input_gradient_saliency_map_and_the_image():
    enc, clf, sal, x, f = _feats('saliency')
    got = {}
    sal.dec.register_forward_pre_hook(lambda m, a: got.update(inp=a[0]))
    sal(f, {})
    enc.eval(); clf.eval()                                 # the map, computed independently, as MultiMix does
    xg = x.clone().requires_grad_(True)
    score = clf(enc(xg), {}).max(1).values.sum()
    g, = torch.autograd.grad(score, xg)
    ref = g.abs().amax(1, keepdim=True); ref = ref/ref.amax((2, 3), keepdim=True)
    h = f['fmap'].shape[-2:]
    inp = got['inp']
    assert inp.shape[1] == enc.fmap_dim + 2
    assert torch.allclose(inp[:, -1:], F.interpolate(ref, size=h, mode='bilinear', align_corners=False), atol=1e-5)
    assert torch.allclose(inp[:, -2:-1], F.interpolate(x, size=h, mode='bilinear', align_corners=False), atol=1e-6)

def test_saliency_pass_leaves_weights_grads_and_batchnorm_stats_alone():
    enc, clf, sal, x, f = _feats('saliency')
    enc.train(); clf.train()
    stats = [b.clone() for b in enc.buffers()]
    sal.saliency_map(f)
    assert all(p.grad is None for p in [*enc.parameters(), *clf.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(stats, enc.buffers())) and enc.training and clf.training

@pytest.mark.parametrize('bridge', BRIDGES)
def test_segmentation_gradients_reach_the_classifier_only_where_multimix_says(bridge):
    "MultiMix detaches the saliency map: the segmentation loss trains the shared encoder, never the classify head; CAM reaches the head"
    enc, clf, sal, x, f = _feats(bridge)
    sal.loss(sal(f, {}), dict(mask=(torch.rand(3, 2, 28, 28) > .5).float())).backward()
    head = 0. if clf.head.weight.grad is None else float(clf.head.weight.grad.abs().sum())
    assert (head == 0.) == (bridge == 'saliency')
    assert float(sum(p.grad.abs().sum() for p in enc.parameters())) > 0

def test_saliency_bridge_refuses_unknown_bridges_and_prompt_heads():
    with pytest.raises(MtlsynError, match="choose 'saliency'"): Saliency(INFO2, bridge='gradcam')
    with pytest.raises(MtlsynError, match="needs the classify head 'linear'"):
        _, clf, sal, x, f = _feats('saliency'); clf.head_kind = 'prompt'; sal.saliency_map(f)

# --- batches that lack some targets

def test_label_and_mask_fractions_withhold_targets_independently():
    sp = load_phantom(size=28, budget=10, seed=0, n_train=200, n_val=40, n_test=40)
    dls = dataloaders(sp, label_fraction=0.5, mask_fraction=0.5, bs=40, device='cpu', seed=1)
    b = dls.train.one_batch()[0]
    assert (dls.n_with_label, dls.n_with_mask) == (20, 20)
    assert np.bincount(b['label'][b['has_label']].numpy(), minlength=4).tolist() == [5]*4   # stratified
    assert (b['mask'][~b['has_mask']] == 0).all() and bool((~b['has_label'] & ~b['has_mask']).any())
    model = build_vlm('small-cnn', None, ['classify', 'segment'], info=sp.info)
    loss = mtl_learner(dls, model).loss_func.task_losses(model(b), b)
    keep = b['has_label']
    ref = F.cross_entropy(model(b)['classify'][keep], b['label'][keep])
    assert torch.allclose(loss['classify'], ref, atol=1e-5)
    with pytest.raises(MtlsynError, match='in \\(0, 1\\]'): dataloaders(sp, label_fraction=1.5)

# --- sites and the domain gap

def test_phantom_site_a_is_the_old_benchmark_and_b_is_known():
    a, b = load_phantom(size=28, budget=5, n_train=80, n_val=8, n_test=8), load_benchmark('phantom', size=28, budget=5, n_train=80, n_val=8, n_test=8, site='B')
    assert phantom_site('A') == SITES['A'] and b.record['site_params'] == SITES['B']
    assert a.record['source_md5'] != b.record['source_md5'] and a.record['split_sha256'] == b.record['split_sha256']
    assert phantom_site(dict(noise=0.1))['noise'] == 0.1 and phantom_site(dict(noise=0.1))['fov'] == 1.0
    for bad in ('C', dict(zoom=2), dict(contrast=-1), 3):
        with pytest.raises(MtlsynError, match='site'): phantom_site(bad)

def test_a_classifier_trained_on_site_a_loses_auc_on_site_b():
    torch.manual_seed(0)
    sp = load_phantom(size=28, budget=50, seed=0, n_train=400, n_val=80, n_test=200, xsite='B')
    dls = dataloaders(sp, bs=32, device='cpu')
    learn = mtl_learner(dls, build_vlm('small-cnn', None, ['classify'], info=sp.info), select_best=False)
    with learn.no_logging(), learn.no_bar(): learn.fit(6, 3e-3)
    a, b = learn.evaluate(dls.test)['classify_auc'], learn.evaluate(dls.xtest)['classify_auc']
    assert a > 0.8 and a - b > 0.1, (a, b)

# --- the study fields

def test_study_fields_validated_and_defaults_keep_run_ids():
    base = dict(tasks=['classify'], text_encoder=None)
    same = [study_runs(load_study(dict(base, **kw)))[0].run_id for kw in
            ({}, dict(label_fraction=1.0, mask_fraction=1, semi='none', semi_kwargs={}))]
    assert same[0] == same[1]
    for kw, msg in ((dict(semi='pseudo', budget='all'), "budget 'all' leaves none"), (dict(semi='fixmatch'), 'semi'),
                    (dict(semi_kwargs={'tau': 1}), "no option 'tau'"), (dict(label_fraction=0), 'label_fraction must be'),
                    (dict(benchmark_kwargs={'xsite': 'Z'}), "site 'Z'")):
        with pytest.raises(MtlsynError, match=msg): load_study(dict(base, **kw))

def test_a_multimix_run_records_cross_domain_and_semi_fields(tmp_path):
    cfg = load_study(dict(name='mm', tasks=['classify', 'saliency'], text_encoder=None, budget=5, epochs=1, bs=20, semi='pseudo',
                          task_kwargs={'saliency': {'bridge': 'saliency'}}, mask_fraction=0.5,
                          benchmark_kwargs=dict(n_train=120, n_val=40, n_test=40, xsite='B')))
    rec = run_one(study_runs(cfg)[0], tmp_path)
    for k in ('test_classify_auc', 'xtest_classify_auc', 'test_saliency_dice', 'xtest_saliency_dice', 'semi_classify_confident', 'semi_saliency_confident'):
        assert isinstance(rec[k], float), k
    assert rec['n_with_mask'] == 10 and rec['n_with_label'] == 20 and rec['cfg_semi'] == 'pseudo'
    assert (tmp_path/'runs'/rec['run_id']/'split.json').read_text().count('"xsite": "B"') == 1
