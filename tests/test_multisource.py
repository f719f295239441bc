"MultiMix's multi-source setting (issue 12): class labels from one source, masks from another, in one split; metrics ignore missing targets"
import os
import numpy as np, pytest, torch
from mtlsyn.core import MtlsynError
from mtlsyn.data.core import BenchmarkInfo, Subset, make_split, load_benchmark
from mtlsyn.data.phantom import load_phantom
from mtlsyn.data.multisource import multisource_split, load_pneumonia_phantom, MixedSubset
from mtlsyn.data.loaders import dataloaders, unlabeled_dl
from mtlsyn.model.tasks import Classify, Segment
from mtlsyn.model.vlm import build_vlm
from mtlsyn.learner.core import mtl_learner
from mtlsyn.study.config import load_study, study_runs
from mtlsyn.study.runner import run_one

torch.set_num_threads(1)
ROOT = os.environ.get('MEDMNIST_ROOT')
needs_medmnist = pytest.mark.skipif(not ROOT or not os.path.exists(os.path.join(ROOT, 'pneumoniamnist.npz')),
                                    reason="needs PneumoniaMNIST: set MEDMNIST_ROOT to the folder holding pneumoniamnist.npz")

def toy_cls(budget=5, seed=0):
    "A two-class, mask-less stand-in for PneumoniaMNIST made of phantoms of another data seed"
    s = load_phantom(28, 'all', n_train=120, n_val=30, n_test=30, data_seed=1)
    info = BenchmarkInfo('toy-xray', 28, 'binary-class', ['normal', 'abnormal'], 1, modality='chest x-ray')
    b = lambda x: Subset(x.images, (x.labels > 0).astype(np.int64), indices=x.indices)
    return make_split(info, b(s.labeled), b(s.val), b(s.test), budget, seed, source_md5='toy')

@pytest.fixture(scope='module')
def toy():
    return multisource_split(toy_cls(), load_phantom(28, 5, n_train=200, n_val=40, n_test=40, xsite='B'))

def _parts(sp): return dict(labeled=sp.labeled, unlabeled=sp.unlabeled, val=sp.val, test=sp.test, xtest=sp.xtest)

# --- the split

def test_no_classification_image_has_a_mask_and_no_phantom_a_label(toy):
    for k, s in _parts(toy).items():
        assert isinstance(s, MixedSubset) and s.images.shape[1:] == (28, 28, 1) and s.masks.shape[1:] == (2, 28, 28), k
        assert not ((s.labels >= 0) & s.has_mask).any(), k
        assert (s.labels[s.source == 1] == -1).all() and not s.has_mask[s.source == 0].any(), k
        assert s.masks[~s.has_mask].max(initial=0) == 0, k           # no mask hides behind has_mask False
        assert len(np.unique(s.indices)) == len(s), k                # global indices stay unique
    assert (toy.record['n_with_label'], toy.record['n_with_mask']) == (10, 20)
    assert not toy.unlabeled.has_mask.any() and (toy.unlabeled.labels == -1).all()   # the pool: neither
    for k in ('val', 'test', 'xtest'): assert (toy.__dict__[k].source == 0).any() and (toy.__dict__[k].source == 1).any(), k
    assert toy.info.classes == ['normal', 'abnormal'] and toy.info.mask_names == ['lung', 'lesion']

def test_xtest_is_the_classification_test_plus_the_other_sites_phantoms(toy):
    assert np.array_equal(toy.xtest.indices, toy.test.indices) and np.array_equal(toy.xtest.labels, toy.test.labels)
    c = toy.test.source == 0
    assert np.array_equal(toy.xtest.images[c], toy.test.images[c])           # the X-rays have no other site
    assert not np.array_equal(toy.xtest.images[~c], toy.test.images[~c])     # the phantoms do
    assert np.array_equal(toy.xtest.has_mask, toy.test.has_mask)             # the same patients (their masks follow the site's field of view)

def test_single_source_training_keeps_the_same_labeled_images_and_eval_sets(toy):
    seg = load_phantom(28, 5, n_train=200, n_val=40, n_test=40, xsite='B')
    c, s = multisource_split(toy_cls(), seg, train_from='classify'), multisource_split(toy_cls(), seg, train_from='segment')
    assert (c.labeled.source == 0).all() and (s.labeled.source == 1).all()
    assert sorted(np.r_[c.labeled.indices, s.labeled.indices]) == sorted(toy.labeled.indices)
    assert np.array_equal(c.test.indices, toy.test.indices) and np.array_equal(s.val.indices, toy.val.indices)
    with pytest.raises(MtlsynError, match='train_from'): multisource_split(toy_cls(), seg, train_from='neither')
    with pytest.raises(MtlsynError, match='has no masks'): multisource_split(toy_cls(), toy_cls())

# --- loaders and metrics

def test_batches_carry_each_target_only_where_it_exists(toy):
    dls = dataloaders(toy, bs=64, seed=0, device='cpu')
    for dl in (dls.train, dls.valid, dls.test, dls.xtest):
        for b, _ in dl:
            assert not (b['has_label'] & b['has_mask']).any()
            assert b['mask'][~b['has_mask']].abs().sum() == 0
            assert b['has_mask'].any() and b['has_label'].any()   # both sources in one batch (bs=64, shuffled or whole)
            break
    assert (dls.n_with_label, dls.n_with_mask) == (10, 20)
    ub = unlabeled_dl(toy, bs=32, seed=0, device='cpu').one_batch()[0]
    assert not ub['has_label'].any() and not ub['has_mask'].any()

def test_metrics_ignore_images_without_their_target():
    info = BenchmarkInfo('t', 8, 'binary-class', ['a', 'b'], 1, ['m'])
    clf, seg = Classify(info, feat_dim=2), Segment(info, fmap_dim=4)
    y = torch.tensor([0, 1, -1, -1]); out = torch.tensor([[2., -2], [-2, 2], [9, -9], [9, -9]])   # the -1 rows would be wrong
    m = clf.summarize([clf.collect(out, dict(label=y))])
    assert m['auc'] == 1 and m['acc'] == 1 and m['bacc'] == 1
    assert torch.isclose(clf.loss(out, dict(label=y)), clf.loss(out[:2], dict(label=y[:2])))
    assert np.isnan(clf.summarize([clf.collect(out[2:], dict(label=y[2:]))])['auc'])          # nobody labelled: no metric
    mask = torch.zeros(4, 1, 8, 8); mask[:2, :, 2:6, 2:6] = 1
    logit = (mask*2 - 1)*5; logit[2:] = 5                                     # perfect on the masked two, wrong on the rest
    has = torch.tensor([True, True, False, False])
    assert seg.summarize([seg.collect(logit, dict(mask=mask, has_mask=has))])['dice'] == pytest.approx(1)
    assert torch.isclose(seg.loss(logit, dict(mask=mask, has_mask=has)), seg.loss(logit[:2], dict(mask=mask[:2], has_mask=has[:2])))
    assert np.isnan(seg.summarize([seg.collect(logit[2:], dict(mask=mask[2:], has_mask=has[2:]))])['dice'])

def test_multilabel_classify_ignores_rows_without_labels():
    info = BenchmarkInfo('t', 8, 'multi-label, binary-class', ['a', 'b'], 1)
    clf = Classify(info, feat_dim=2)
    y = torch.tensor([[1., 0], [0, 1], [-1, -1]]); out = torch.tensor([[3., -3], [-3, 3], [-9, 9]])
    assert torch.isclose(clf.loss(out, dict(label=y)), clf.loss(out[:2], dict(label=y[:2])))
    assert clf.summarize([clf.collect(out, dict(label=y))])['auc'] == 1

# --- a joint run

def test_a_joint_run_trains_and_scores_each_task_on_its_own_source(toy):
    dls = dataloaders(toy, bs=16, seed=0, device='cpu')
    model = build_vlm(image_encoder='small-cnn', text_encoder=None, tasks=['classify', 'saliency'], info=toy.info,
                      task_kwargs={'saliency': {'bridge': 'saliency'}})
    learn = mtl_learner(dls, model, lr=3e-3, select_best=False)   # the last epoch's weights, not the best classify AUC's
    before = learn.evaluate(dls.test)
    with learn.no_logging(), learn.no_bar(): learn.fit_one_cycle(15, 3e-3)
    after, x = learn.evaluate(dls.test), learn.evaluate(dls.xtest)
    assert after['saliency_dice'] > before['saliency_dice'] + 0.1, (before, after)
    assert np.isfinite(after['classify_auc']) and np.isfinite(x['saliency_dice'])
    assert x['classify_auc'] == pytest.approx(after['classify_auc'])   # the same X-rays in test and xtest

# --- PneumoniaMNIST + phantoms (needs the file)

@needs_medmnist
def test_pneumonia_phantom_benchmark_shapes_and_sources():
    sp = load_benchmark('pneumonia+phantom', budget=5, seed=1, xsite='B', n_train=200, n_val=40, n_test=40)
    pn, ph = load_benchmark('pneumoniamnist', budget=5, seed=1), load_phantom(28, 5, 1, n_train=200, n_val=40, n_test=40)
    assert sp.info.classes == pn.info.classes and sp.info.task == 'binary-class' and sp.info.mask_names == ['lung', 'lesion']
    assert sp.record['cls_split_sha256'] == pn.record['split_sha256'] and sp.record['seg_split_sha256'] == ph.record['split_sha256']
    assert (sp.record['n_with_label'], sp.record['n_with_mask'], sp.record['n_seg']) == (10, 20, 20)
    assert len(sp.test) == len(pn.test) + 40 and len(sp.xtest) == len(sp.test) and len(sp.unlabeled) == len(pn.unlabeled) + 180
    for s in _parts(sp).values(): assert not ((s.labels >= 0) & s.has_mask).any()
    sp2 = load_pneumonia_phantom(budget=5, seed=1, n_seg=7, n_train=200, n_val=40, n_test=40, sources='phantom')
    assert (sp2.record['n_with_label'], sp2.record['n_with_mask']) == (0, 7) and len(sp2.val) == len(sp.val)
    with pytest.raises(MtlsynError, match='sources'): load_pneumonia_phantom(budget=5, sources='xray')
    with pytest.raises(MtlsynError, match='n_seg'): load_pneumonia_phantom(budget=5, n_seg=0, n_train=200, n_val=40, n_test=40)

def test_missing_pneumoniamnist_says_how_to_get_it(tmp_path):
    with pytest.raises(MtlsynError, match='set MEDMNIST_ROOT'): load_pneumonia_phantom(budget=5, root=str(tmp_path))

@needs_medmnist
def test_a_study_run_on_pneumonia_phantom_records_both_tasks_in_and_cross_domain(tmp_path):
    cfg = load_study(dict(name='ms', benchmark='pneumonia+phantom', tasks=['classify', 'saliency'], text_encoder=None, budget=5,
                          epochs=1, bs=32, semi='pseudo', task_kwargs={'saliency': {'bridge': 'saliency'}},
                          benchmark_kwargs=dict(n_train=120, n_val=40, n_test=40, xsite='B'), root=ROOT))
    rec = run_one(study_runs(cfg)[0], tmp_path)
    for k in ('test_classify_auc', 'xtest_classify_auc', 'test_saliency_dice', 'xtest_saliency_dice', 'semi_classify_confident'):
        assert isinstance(rec[k], float) and np.isfinite(rec[k]), k
    assert rec['n_with_label'] == 10 and rec['n_with_mask'] == 20

def test_a_study_on_pneumonia_phantom_checks_sites_and_val_budget_before_any_run():
    "A bad phantom site, or a val_budget that would drop val's phantoms, fails at load time (`--dry-run` too), not at run start"
    from mtlsyn.core import MtlsynError
    from mtlsyn.study import load_study
    base = dict(benchmark='pneumonia+phantom', text_encoder=None, tasks=['classify', 'saliency'], seeds=[0])
    load_study(dict(base, benchmark_kwargs=dict(site='A', xsite='B')))
    with pytest.raises(MtlsynError, match='site'): load_study(dict(base, benchmark_kwargs=dict(xsite='Q')))
    with pytest.raises(MtlsynError, match='val_budget: all'): load_study(dict(base, val_budget=20))
