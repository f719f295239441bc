"Encoders, tasks and the multi-task VLM: shapes, weights, metrics as MedMNIST computes them, user errors"
from types import SimpleNamespace
import numpy as np, pytest, torch, torch.nn.functional as F
from mtlsyn.core import MtlsynError
from mtlsyn.model.encoders import build_image_encoder, build_text_encoder, efficientnet_lite0_state_dict
from mtlsyn.model.tasks import medmnist_metrics, Classify, Contrastive, Segment
from mtlsyn.model.vlm import build_vlm

torch.set_num_threads(1)

@pytest.mark.parametrize('name,fmap', [('small-cnn', (128,4,4)), ('resnet18-28', (512,4,4)), ('resnet50-28', (2048,4,4)),
                                       ('vit-tiny', (192,7,7)), ('timm:resnet10t', None)])
@pytest.mark.parametrize('in_chans', [1, 3])
def test_image_encoders_take_grey_and_rgb_28px(name, fmap, in_chans):
    enc = build_image_encoder(name, in_chans=in_chans).eval()
    with torch.no_grad(): o = enc(torch.randn(2, in_chans, 28, 28))
    assert o['feat'].shape == (2, enc.out_dim) and o['fmap'].shape[0] == 2 and o['fmap'].ndim == 4
    if fmap: assert tuple(o['fmap'].shape[1:]) == fmap

def test_resnet18_28_is_the_medmnist_cifar_variant():
    enc = build_image_encoder('resnet18-28', in_chans=1)
    conv = enc.stem[0]
    assert conv.kernel_size == (3,3) and conv.stride == (1,1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in enc.modules())
    assert 11.0e6 < sum(p.numel() for p in enc.parameters()) < 11.3e6

def test_pretrained_efficientnet_lite0_loads_the_wheels_imagenet_weights():
    enc = build_image_encoder('timm:tf_efficientnet_lite0', in_chans=3, pretrained=True)
    sd = efficientnet_lite0_state_dict(enc.m)
    w = enc.m.state_dict()['blocks.3.0.conv_pw.weight']
    assert torch.equal(w, sd['blocks.3.0.conv_pw.weight'])
    grey = build_image_encoder('timm:tf_efficientnet_lite0', in_chans=1, pretrained=True)
    assert torch.allclose(grey.m.conv_stem.weight, enc.m.conv_stem.weight.sum(1, keepdim=True), atol=1e-6)   # RGB filters summed

def test_unknown_or_unavailable_encoders_are_user_errors():
    with pytest.raises(MtlsynError, match='choose one of'): build_image_encoder('resnet18')
    with pytest.raises(MtlsynError, match='unknown timm model'): build_image_encoder('timm:not_a_model')
    with pytest.raises(MtlsynError, match='pretrained'): build_image_encoder('resnet18-28', pretrained=True)
    with pytest.raises(MtlsynError, match='offline'): build_text_encoder('hf:/no/such/folder')

def test_minilm_frozen_caches_by_string_and_partial_trains_last_layers():
    te = build_text_encoder('minilm')
    a = te.encode(['left lung nodule', 'normal chest'])
    assert a.shape == (2, 384) and len(te.cache) == 2 and not a.requires_grad
    b = te.encode(['normal chest', 'left lung nodule'])
    assert torch.equal(a[0], b[1]) and len(te.cache) == 2
    assert not list(te.parameters()) and not te.state_dict()            # frozen weights stay out of optimiser and checkpoints
    ft = build_text_encoder('minilm', mode='finetune')
    assert ft.encode(['x']).requires_grad
    pt = build_text_encoder('hf:' + te.path, mode='partial', n_unfrozen=1)
    tr = [n for n,p in pt.named_parameters() if p.requires_grad]
    assert tr and all('layer.5' in n or 'pooler' in n for n in tr)

def test_classify_metrics_follow_medmnist():
    rng = np.random.default_rng(0)
    # binary: positive-class probability, acc at 0.5
    y = rng.integers(0, 2, 50); p = rng.random((50, 2)); p /= p.sum(1, keepdims=True)
    from sklearn.metrics import roc_auc_score
    m = medmnist_metrics(y, p, 'binary-class')
    assert m['auc'] == pytest.approx(roc_auc_score(y, p[:, 1])) and m['acc'] == pytest.approx(((p[:, 1] > .5) == y).mean())
    # multi-label: per-label AUCs averaged, acc at 0.5 per entry
    y = rng.integers(0, 2, (40, 3)); s = rng.random((40, 3))
    m = medmnist_metrics(y, s, 'multi-label, binary-class')
    assert m['auc'] == pytest.approx(np.mean([roc_auc_score(y[:, i], s[:, i]) for i in range(3)]))
    assert m['acc'] == pytest.approx(((s > .5) == y).mean())
    # ordinal: one-vs-rest AUCs averaged, argmax accuracy
    y = np.array([0, 1, 2, 3, 4]); s = np.eye(5)
    assert medmnist_metrics(y, s, 'ordinal-regression') == dict(auc=1.0, acc=1.0)
    assert np.isnan(medmnist_metrics(np.zeros(4, int), rng.random((4, 2)), 'binary-class')['auc'])

def test_classify_heads_for_every_task_type():
    for task, y, n in [('binary-class', torch.tensor([0,1,1,0]), 2), ('ordinal-regression', torch.tensor([0,4,2,1]), 5),
                       ('multi-label, binary-class', torch.tensor([[0,1,1],[1,0,0],[0,0,1],[1,1,0]]).float(), 3)]:
        info = SimpleNamespace(name='t', task=task, classes=[f'c{i}' for i in range(n)], modality='x', n_channels=1, multi_label=task.startswith('multi-label'))
        c = Classify(info, feat_dim=8)
        out = c(dict(feat=torch.randn(4, 8)), dict(label=y))
        assert out.shape == (4, n) and torch.isfinite(c.loss(out, dict(label=y)))
        assert set(c.metrics([out], [dict(label=y)])) == {'auc', 'acc', 'bacc', 'ece', 'majority_rate'}

def test_contrastive_recall_counts_duplicate_captions_as_one():
    c = Contrastive(embed_dim=2)
    img = F.normalize(torch.tensor([[1., 0.], [1., .1], [0., 1.]]), dim=-1)
    txt = F.normalize(torch.tensor([[1., 0.], [1., 0.], [0., 1.]]), dim=-1)
    b = dict(text=['normal', 'normal', 'effusion'])
    o = dict(img=img, txt=txt)
    assert c.metrics([o], [b]) == dict(r1=1.0)
    # identical captions are not pushed apart: the loss with perfect alignment is lower than with swapped captions
    assert c.loss(o, b) < c.loss(dict(img=img, txt=txt.flip(0)), b)

def test_segment_ignores_samples_without_masks_and_scores_dice():
    s = Segment(SimpleNamespace(mask_names=['lung', 'lesion']), fmap_dim=4)
    m = torch.zeros(2, 2, 8, 8); m[:, :, :4] = 1
    good, bad = m*20 - 10, -m*20 + 10
    b = dict(mask=m, has_mask=torch.tensor([True, False]))
    assert s.metrics([good], [b])['dice'] == pytest.approx(1.0)
    assert s.loss(torch.cat([good[:1], bad[1:]]), b) < 0.1       # the maskless sample's bad prediction is not penalised
    with pytest.raises(MtlsynError, match='masks'): Segment(SimpleNamespace(mask_names=[]))

INFO = SimpleNamespace(name='phantom', task='multi-class', classes=['normal','consolidation','nodule','effusion'],
                       n_channels=1, modality='chest x-ray', mask_names=['lung','lesion'], multi_label=False)

def test_build_vlm_all_tasks_parallel_and_cascaded():
    b = dict(image=torch.randn(4,1,28,28), label=torch.tensor([0,1,2,3]), text=['a','b','a','c'],
             mask=torch.zeros(4,2,28,28), has_mask=torch.ones(4, dtype=torch.bool))
    names = ('classify','contrastive','reconstruct','denoise','segment','saliency','consistency')
    for sharing in ('parallel', 'cascaded'):
        m = build_vlm('small-cnn', 'minilm', names, info=INFO, sharing=sharing)
        out = m(b)
        assert list(out) == list(m.sharing.order) and set(out) == set(names)
        loss = sum(m.tasks[n].loss(out[n], b) for n in names)
        loss.backward()
        assert m.image_encoder.net[0][0].weight.grad is not None
    assert set(m.sharing.adapters) == set(m.sharing.order[:-1])

def test_prompt_classifier_scores_zero_shot_from_text():
    m = build_vlm('small-cnn', 'minilm', [('classify', dict(head='prompt'))], info=INFO)
    assert len(m.tasks['classify'].prompts) == 4
    out = m(dict(image=torch.randn(3,1,28,28)))['classify']
    assert out.shape == (3, 4)

def test_vlm_user_errors():
    with pytest.raises(MtlsynError, match='info'): build_vlm('small-cnn', None, ('classify',))
    with pytest.raises(MtlsynError, match='text encoder'): build_vlm('small-cnn', None, ('contrastive',), info=INFO)
    with pytest.raises(MtlsynError, match='needs task'): build_vlm('small-cnn', None, ('saliency',), info=INFO)
    with pytest.raises(MtlsynError, match='choose one of'): build_vlm('small-cnn', None, ('classify',), info=INFO, sharing='tree')
    with pytest.raises(MtlsynError, match='segmentation branch'): build_vlm('small-cnn', None, ('classify',), info=INFO, sharing='hybrid')

# ---------------------------------------------------------------- accuracy, thresholds, the text side (issue 10)

def test_balanced_accuracy_ece_and_majority_rate():
    from sklearn.metrics import balanced_accuracy_score
    from mtlsyn.model.tasks import balance_metrics, ece_score
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60); p = rng.dirichlet(np.ones(3), 60)
    m = balance_metrics(y, p, 'multi-class')
    assert m['bacc'] == pytest.approx(balanced_accuracy_score(y, p.argmax(1)))
    assert m['majority_rate'] == pytest.approx(np.bincount(y).max()/60)
    conf, hit = p.max(1), p.argmax(1) == y                               # ECE by its definition, 15 bins
    edges = np.linspace(0, 1, 16); ece = 0.
    for lo, hi in zip(edges[:-1], edges[1:]):
        s = (conf > lo) & (conf <= hi)
        if s.any(): ece += s.mean()*abs(hit[s].mean() - conf[s].mean())
    assert m['ece'] == pytest.approx(ece)
    assert ece_score(np.array([0, 1]), np.array([[1., 0.], [0., 1.]])) == 0.
    Y = rng.integers(0, 2, (30, 4)); S = rng.random((30, 4))
    ml = balance_metrics(Y, S, 'multi-label, binary-class')
    assert ml['ece'] == pytest.approx(np.mean([ece_score(Y[:, l], np.stack([1-S[:, l], S[:, l]], 1)) for l in range(4)]))
    info = SimpleNamespace(name='t', task='multi-class', classes=list('abc'), multi_label=False)
    clf = Classify(info, feat_dim=4)
    assert clf.metric_names[0] == 'auc' and clf.higher_is_better['ece'] is False
    out = torch.randn(60, 3); b = dict(label=torch.as_tensor(y))
    got = clf.metrics([out], [b])
    assert got['auc'] == medmnist_metrics(y, out.softmax(-1).numpy(), 'multi-class')['auc'] and set(got) == set(clf.metric_names)

def test_class_weights_and_val_threshold():
    from mtlsyn.model.tasks import fit_threshold
    bi = SimpleNamespace(name='t', task='binary-class', classes=['neg', 'pos'], multi_label=False)
    c = Classify(bi, feat_dim=4, class_weight='balanced', class_counts=[30, 10])
    assert torch.allclose(c.class_weights, torch.tensor([40/60, 40/20]))
    assert 'class_weights' not in c.state_dict()
    out = torch.tensor([[2., 0.], [0., 2.]]); b = dict(label=torch.tensor([0, 1]), target=torch.eye(2))
    plain = Classify(bi, feat_dim=4)
    assert c.loss(out, b) == pytest.approx(float(F.cross_entropy(out, torch.eye(2), weight=c.class_weights)))
    assert c.loss(out, b) != pytest.approx(float(plain.loss(out, b)))
    with pytest.raises(MtlsynError, match='class_counts'): Classify(bi, class_weight='balanced')
    with pytest.raises(MtlsynError, match="'balanced' or null"): Classify(bi, class_weight='inverse')
    with pytest.raises(MtlsynError, match='binary tasks'): Classify(SimpleNamespace(**{**vars(bi), 'task': 'multi-class', 'classes': list('abc')}), threshold='val')
    # threshold on val through a model: every val score below 0.5, the fitted threshold separates them
    m = build_vlm('small-cnn', None, [('classify', dict(threshold='val'))], info=SimpleNamespace(**vars(bi), n_channels=1))
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28); yv = torch.tensor([0, 1]*4)
    batch = dict(image=x, label=yv, target=torch.eye(2)[yv])
    learn = SimpleNamespace(model=m, dls=SimpleNamespace(valid=[(batch, batch)]))
    thr = fit_threshold(learn)
    t = m.tasks['classify']
    assert thr == t.threshold_ and 0 <= thr <= 1
    with torch.no_grad(): m.eval(); p = m(batch)['classify'].softmax(-1)[:, 1].numpy()
    from sklearn.metrics import roc_curve
    fpr, tpr, _ = roc_curve(yv.numpy(), p)
    assert t.metrics([m(batch)['classify']], [batch])['bacc'] == pytest.approx(0.5 + (tpr - fpr).max()/2)
    assert fit_threshold(SimpleNamespace(model=build_vlm('small-cnn', None, ['classify'], info=SimpleNamespace(**vars(bi), n_channels=1)), dls=None)) is None

def test_learned_text_control_works_with_contrastive_and_prompt_heads():
    import mtlsyn.model.encoders as enc
    info = SimpleNamespace(name='phantom', task='multi-class', classes=list('abcd'), n_channels=1, modality='x', mask_names=[], multi_label=False)
    enc._load_hf.cache_clear()
    m = build_vlm('small-cnn', 'learned', [('classify', dict(head='prompt')), 'contrastive'], info=info)
    assert enc._load_hf.cache_info().currsize == 0                       # no language model loaded
    y = torch.tensor([0, 1, 2, 3, 0, 1]); b = dict(image=torch.randn(6, 1, 28, 28), label=y, target=torch.eye(4)[y], text=[f'r{i}' for i in range(6)])
    out = m(b)
    loss = m.tasks['contrastive'].loss(out['contrastive'], b) + m.tasks['classify'].loss(out['classify'], b)
    loss.backward()
    assert m.text_encoder.emb.grad is not None and m.text_encoder.emb.grad.abs().sum() > 0
    assert torch.allclose(out['contrastive']['txt'][0], out['contrastive']['txt'][4])   # same class, different words
    assert m.one_off_costs == dict(cost_prompt_encoding_seconds=0., cost_prompt_encoding_flops=0.)
    with pytest.raises(MtlsynError, match='classes'): build_text_encoder('learned')

def test_frozen_prompt_encoding_is_a_counted_one_off_cost():
    info = SimpleNamespace(name='phantom', task='multi-class', classes=list('abcd'), n_channels=1, modality='x', mask_names=[], multi_label=False)
    m = build_vlm('small-cnn', 'minilm', ['classify', 'contrastive'], info=info)
    assert m.one_off_costs['cost_prompt_encoding_flops'] == 0.
    y = torch.tensor([0, 1]); b = dict(image=torch.randn(2, 1, 28, 28), label=y, target=torch.eye(4)[y], text=['left nodule', 'normal'])
    m(b); c1 = m.one_off_costs
    assert c1['cost_prompt_encoding_flops'] > 0 and c1['cost_prompt_encoding_seconds'] > 0
    m(b); assert m.one_off_costs == c1                                   # cached strings cost nothing more
    assert build_vlm('small-cnn', 'minilm', ['classify'], info=info).one_off_costs['cost_prompt_encoding_flops'] == 0.
