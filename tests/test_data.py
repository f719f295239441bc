"Data stage: MedMNIST checks and budgets on small generated files, the real PneumoniaMNIST split, phantoms, text, loaders"
import json, shutil
from pathlib import Path
import numpy as np
import pytest
import torch
from medmnist import INFO
from mtlsyn.core import MtlsynError, indices_sha256, cache_dir
from mtlsyn.data import medmnist as mm
from mtlsyn.data.all import load_benchmark, benchmarks
from mtlsyn.data.core import budget_indices
from mtlsyn.data.medmnist import FLAGS, FLAGS_3D, medmnist_info, medmnist_filename
from mtlsyn.data.phantom import load_phantom, make_phantoms, phantom_info, PHANTOM_CLASSES
from mtlsyn.data.text import class_prompts, prompt_templates, captions_for, TEMPLATES
from mtlsyn.data.loaders import SyntheticPool, dataloaders, unlabeled_dl

# The pinned split: PneumoniaMNIST (28 px, official file), 1% budget, seed 0
PNEUMONIA_1PCT_SEED0 = 'b031c1ab00032734f24daa6be1bad212677c7c17c80a70da1f57712c20fc6791'

def fake_npz(path, flag, size=28, n=(48, 10, 12), seed=0, **override):
    "Write a small npz shaped like MedMNIST `flag` at `size` (every class present in every part)"
    info, rng = medmnist_info(flag, size), np.random.default_rng(seed)
    d = {}
    for s, m in zip(('train', 'val', 'test'), n):
        shp = (m, size, size) + ((3,) if info.n_channels == 3 else ())
        d[f'{s}_images'] = rng.integers(0, 256, shp, dtype=np.uint8)
        if info.multi_label:
            y = (rng.random((m, info.n_classes)) < 0.25).astype(np.uint8)
            y[:info.n_classes, :] = np.eye(info.n_classes, dtype=np.uint8)[:m]   # every label has positives
            y[-3:] = 0                                                         # and some images have none
        else: y = (np.arange(m) % info.n_classes)[:, None].astype(np.uint8)
        d[f'{s}_labels'] = y
    d.update(override)
    np.savez_compressed(path, **d)
    return Path(path)

# ---------------------------------------------------------------- every dataset's task type

@pytest.mark.parametrize('flag', FLAGS)
def test_every_medmnist_dataset_loads_from_a_small_file(tmp_path, flag):
    "Each of the 12 datasets: task, classes and channels from INFO; budget 2 per class; parts disjoint and whole"
    fake_npz(tmp_path/f'{flag}.npz', flag)
    sp = load_benchmark(flag, budget=2, seed=0, root=tmp_path, verify=False)
    info = INFO[flag]
    assert sp.info.task == info['task'] and sp.info.n_classes == len(info['label']) and sp.info.n_channels == info['n_channels']
    assert sp.labeled.images.shape[1:] == (28, 28, info['n_channels']) and sp.labeled.images.dtype == np.uint8
    assert all(c >= 2 for c in sp.record['labeled_per_class'])
    if sp.info.multi_label:
        assert sp.labeled.labels.dtype == np.float32 and sp.labeled.labels.shape[1] == len(info['label'])
    else:
        assert sp.labeled.labels.dtype == np.int64 and sp.record['labeled_per_class'] == [2]*sp.info.n_classes
    lab, unl = sp.labeled.indices, sp.unlabeled.indices
    assert not set(lab) & set(unl) and sorted(np.r_[lab, unl]) == list(range(48))
    assert (sp.record['n_val'], sp.record['n_test']) == (10, 12)
    assert sp.record['split_sha256'] == indices_sha256(lab)

def test_sizes_use_medmnist_file_names(tmp_path):
    assert medmnist_filename('pneumoniamnist', 28) == 'pneumoniamnist.npz'
    assert medmnist_filename('pneumoniamnist', 224) == 'pneumoniamnist_224.npz'
    fake_npz(tmp_path/'dermamnist_64.npz', 'dermamnist', size=64)
    sp = load_benchmark('dermamnist', size=64, budget=1, root=tmp_path, verify=False)
    assert sp.labeled.images.shape[1:] == (64, 64, 3)
    with pytest.raises(MtlsynError, match='not a MedMNIST size'): load_benchmark('dermamnist', size=32, root=tmp_path)

def test_root_from_environment(tmp_path, monkeypatch):
    fake_npz(tmp_path/'breastmnist.npz', 'breastmnist')
    monkeypatch.setenv('MEDMNIST_ROOT', str(tmp_path))
    assert load_benchmark('breastmnist', budget=3, verify=False).record['labeled_per_class'] == [3, 3]

def test_registry_names_every_benchmark():
    assert set(benchmarks.names()) == set(FLAGS) | set(FLAGS_3D) | {'phantom', 'phantom3d', 'pneumonia+phantom'}
    with pytest.raises(MtlsynError, match='choose one of'): load_benchmark('nosuchmnist')

# ---------------------------------------------------------------- budgets

def test_fraction_budget_rounds_each_class_half_up():
    y = np.r_[np.zeros(1214, int), np.ones(3494, int)]          # PneumoniaMNIST's train classes
    idx = budget_indices(y, 0.01, seed=0)
    assert np.bincount(y[idx]).tolist() == [12, 35]               # floor(12.14+.5), floor(34.94+.5)
    y3 = np.repeat([0, 1, 2], [25, 15, 5])
    assert np.bincount(y3[budget_indices(y3, 0.1, 0)]).tolist() == [3, 2, 1]   # 2.5→3, 1.5→2, 0.5→1

def test_budget_is_seeded_nested_and_checked():
    y = np.repeat(np.arange(5), 40)                                # an ordinal 5-grade label like RetinaMNIST
    a, b = budget_indices(y, 4, seed=0), budget_indices(y, 4, seed=0)
    assert (a == b).all() and not (a == budget_indices(y, 4, seed=1)).all()
    assert set(a) <= set(budget_indices(y, 10, seed=0))           # smaller budgets are subsets of larger ones
    assert np.bincount(y[a]).tolist() == [4]*5
    with pytest.raises(MtlsynError, match='too small'): budget_indices(y, 0.01, seed=0)
    with pytest.raises(MtlsynError, match='more than'): budget_indices(y, 41, seed=0)
    for bad in ('zero', 0, -3, 1.5, True):
        with pytest.raises(MtlsynError): budget_indices(y, bad)

def test_multilabel_budget_gives_each_label_its_quota_of_positives():
    rng = np.random.default_rng(0)
    Y = (rng.random((600, 14)) < np.linspace(0.02, 0.3, 14)).astype(np.uint8)
    idx = budget_indices(Y, 5, seed=0, multi_label=True)
    assert (Y[idx].sum(0) >= 5).all()
    neg = ~Y.any(1)
    assert neg[idx].sum() == min(5, neg.sum())                     # the 'no finding' stratum gets its own quota
    f = budget_indices(Y, 0.1, seed=0, multi_label=True)
    assert (Y[f].sum(0) >= np.floor(0.1*Y.sum(0) + 0.5)).all()

def test_budget_too_small_on_a_file_says_so(tmp_path):
    fake_npz(tmp_path/'octmnist.npz', 'octmnist')
    with pytest.raises(MtlsynError, match='too small'): load_benchmark('octmnist', budget=0.01, root=tmp_path, verify=False)

def test_split_record_saves_as_json(tmp_path):
    fake_npz(tmp_path/'bloodmnist.npz', 'bloodmnist')
    sp = load_benchmark('bloodmnist', budget=3, seed=2, root=tmp_path, verify=False)
    rec = json.loads(sp.save_record(tmp_path/'split.json').read_text())
    assert rec['split_sha256'] == indices_sha256(rec['labeled_indices']) and rec['seed'] == 2 and rec['budget'] == 3
    assert rec['labeled_indices'] == sorted(rec['labeled_indices'])
    assert list(cache_dir('splits').glob('bloodmnist_28_3_2_*.json'))   # the split is kept in the cache, not the data folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bloodmnist.npz', 'split.json']

# ---------------------------------------------------------------- file checks

def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(MtlsynError) as e: load_benchmark('pneumoniamnist', size=64, root=tmp_path)
    msg = str(e.value)
    assert 'pneumoniamnist_64.npz' in msg and INFO['pneumoniamnist']['url_64'] in msg
    assert INFO['pneumoniamnist']['MD5_64'] in msg and str(tmp_path) in msg and '--download' in msg
    assert list(tmp_path.iterdir()) == []

@pytest.mark.parametrize('damage,expect', [
    ('truncate', 'not a readable npz'),
    ('missing_key', 'missing the key(s) test_labels'),
    ('bad_shape', 'expected uint8 (N,28,28)'),
    ('bad_label', 'outside 0..1'),
])
def test_structure_errors_without_md5(tmp_path, damage, expect):
    p = tmp_path/'breastmnist.npz'
    if damage == 'truncate':
        fake_npz(p, 'breastmnist'); b = p.read_bytes(); p.write_bytes(b[:len(b)//2])
    else:
        good = dict(np.load(fake_npz(tmp_path/'good.npz', 'breastmnist')))
        if damage == 'missing_key': good.pop('test_labels')
        if damage == 'bad_shape': good['val_images'] = good['val_images'][:, :20]
        if damage == 'bad_label': good['train_labels'][0] = 7
        np.savez(p, **good); (tmp_path/'good.npz').unlink()
    before = sorted(tmp_path.iterdir())
    with pytest.raises(MtlsynError, match=r'breastmnist\.npz') as e: load_benchmark('breastmnist', root=tmp_path, verify=False)
    assert expect in str(e.value) and len(str(e.value).splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == before                      # nothing written next to the data

def test_md5_mismatch_on_a_changed_copy_of_the_real_file(tmp_path, medmnist_root):
    src = medmnist_root/'pneumoniamnist.npz'
    dst = tmp_path/'pneumoniamnist.npz'; shutil.copy(src, dst)
    b = bytearray(dst.read_bytes()); b[len(b)//2] ^= 0xFF; dst.write_bytes(bytes(b))
    with pytest.raises(MtlsynError, match='MD5 mismatch') as e: load_benchmark('pneumoniamnist', root=tmp_path)
    assert INFO['pneumoniamnist']['MD5'] in str(e.value) and mm.file_md5(dst) in str(e.value)

def test_md5_check_is_cached_by_path_size_and_mtime(tmp_path, medmnist_root, monkeypatch):
    calls = []
    real = mm.file_md5
    monkeypatch.setattr(mm, 'file_md5', lambda p, *a: calls.append(p) or real(p, *a))
    load_benchmark('pneumoniamnist', budget=10, root=medmnist_root)
    load_benchmark('pneumoniamnist', budget=10, root=medmnist_root)
    assert len(calls) == 1                                           # the second load trusts the cached pass
    assert list(cache_dir('md5').glob('*.json'))

# ---------------------------------------------------------------- the real PneumoniaMNIST split (done-when)

def test_pneumoniamnist_one_percent_is_pinned(medmnist_root):
    sp = load_benchmark('pneumoniamnist', budget=0.01, seed=0, root=medmnist_root)
    r = sp.record
    assert r['labeled_per_class'] == [12, 35]
    assert (r['n_labeled'] + r['n_unlabeled'], r['n_val'], r['n_test']) == (4708, 524, 624)
    assert r['split_sha256'] == PNEUMONIA_1PCT_SEED0 and r['source_md5'] == INFO['pneumoniamnist']['MD5']
    assert load_benchmark('pneumoniamnist', budget=0.01, seed=1, root=medmnist_root).record['split_sha256'] != PNEUMONIA_1PCT_SEED0
    assert load_benchmark('pneumoniamnist', budget=10, seed=0, root=medmnist_root).record['labeled_per_class'] == [10, 10]

# ---------------------------------------------------------------- phantoms

def test_phantoms_are_deterministic_balanced_and_consistent():
    a, b = make_phantoms(40, size=28, seed=3), make_phantoms(40, size=28, seed=3)
    assert (a.images == b.images).all() and (a.masks == b.masks).all() and a.captions == b.captions
    assert not (make_phantoms(40, size=28, seed=4).images == a.images).all()
    assert np.bincount(a.labels).tolist() == [10]*4
    assert a.images.shape == (40, 28, 28, 1) and a.masks.shape == (40, 2, 28, 28)
    lesion = a.masks[:, 1].reshape(40, -1).any(1)
    assert (lesion == (a.labels != 0)).all()                         # a lesion mask exactly where there is a lesion
    assert (a.masks[:, 0].reshape(40, -1).sum(1) > 20).all()         # both lungs are there
    for y, c in zip(a.labels, a.captions):
        assert {0: 'No acute', 1: 'consolidation', 2: 'nodule', 3: 'effusion'}[int(y)] in c

def test_phantom_benchmark_default_split_and_budget():
    sp = load_benchmark('phantom', size=28, budget=20, seed=0)
    r = sp.record
    assert (r['n_labeled'] + r['n_unlabeled'], r['n_val'], r['n_test']) == (2000, 400, 800)
    assert r['labeled_per_class'] == [20]*4 and sp.info.classes == PHANTOM_CLASSES and sp.info.mask_names == ['lung', 'lesion']
    assert np.bincount(sp.val.labels).tolist() == [100]*4
    again = load_benchmark('phantom', size=28, budget=20, seed=0)    # from the cache
    assert again.record['split_sha256'] == r['split_sha256'] and (again.val.images == sp.val.images).all()
    assert list(cache_dir('phantoms').glob('phantom_28_*.npz'))
    assert load_benchmark('phantom', size=28, budget=20, seed=1).record['split_sha256'] != r['split_sha256']

def test_phantom_difficulty_changes_the_images_and_is_checked():
    easy, hard = make_phantoms(8, 28, 0, difficulty=0.), make_phantoms(8, 28, 0, difficulty=1.)
    assert (easy.labels == hard.labels).all() and not (easy.images == hard.images).all()
    with pytest.raises(MtlsynError, match='difficulty'): load_phantom(28, difficulty=1.5)
    with pytest.raises(MtlsynError, match='size'): load_phantom(32)

# ---------------------------------------------------------------- text

@pytest.mark.parametrize('flag', FLAGS + ['phantom'])
def test_prompts_for_every_dataset(flag):
    n = len(PHANTOM_CLASSES) if flag == 'phantom' else len(INFO[flag]['label'])
    assert len(class_prompts(flag)) == n and len(set(class_prompts(flag))) == n
    pt = prompt_templates(flag)
    assert len(pt) == n and all(len(p) == len(TEMPLATES) for p in pt)

def test_custom_template_and_captions():
    assert class_prompts('pneumoniamnist', 'x-ray: {desc}') == ['x-ray: normal lungs', 'x-ray: pneumonia']
    with pytest.raises(MtlsynError, match='desc'): class_prompts('pneumoniamnist', 'no field')
    with pytest.raises(MtlsynError, match='template'): class_prompts('pneumoniamnist', 99)
    ph = make_phantoms(4, 28, 0)
    assert captions_for(ph, phantom_info(28)) == ph.captions

# ---------------------------------------------------------------- loaders

@pytest.fixture
def phantom_split(): return load_benchmark('phantom', size=28, budget=10, seed=0)

def test_batches_are_dicts_with_the_contract_keys(phantom_split):
    dls = dataloaders(phantom_split, bs=16, device='cpu')
    b, b2 = dls.one_batch()
    assert b is b2 and dls.n_inp == 1 and dls.info is phantom_split.info
    assert b['image'].dtype == torch.float32 and b['image'].shape == (16, 1, 28, 28)
    assert b['label'].dtype == torch.int64 and b['target'].shape == (16, 4)
    assert (b['target'].argmax(1) == b['label']).all() and (b['target'].sum(1) == 1).all()
    assert b['mask'].dtype == torch.float32 and b['mask'].shape == (16, 2, 28, 28) and b['has_mask'].all()
    assert isinstance(b['text'], list) and isinstance(b['text'][0], str) and not b['is_synthetic'].any()
    assert b['index'].dtype == torch.int64
    assert abs(float(torch.cat([bb['image'] for bb, _ in dls.train]).mean())) < 0.2   # normalised by the dataset's stats
    assert len(dls.valid.dataset) == 400 and len(dls.test.dataset) == 800

def test_ratio_mixing_redraws_the_pool_each_epoch(phantom_split):
    u = phantom_split.unlabeled
    soft = np.eye(4, dtype=np.float32)[u.labels[:50]]*0.7 + 0.075
    pool = SyntheticPool(u.images[:50], soft, u.captions[:50], None, dict(generator='test'))
    dls = dataloaders(phantom_split, pool, ratio=0.5, bs=8, seed=0, device='cpu')
    epochs = [[bb for bb, _ in dls.train] for _ in range(2)]
    for ep in epochs:
        syn = torch.cat([bb['is_synthetic'] for bb in ep])
        assert len(syn) == 60 and int(syn.sum()) == 20                 # 40 real + round(0.5*40) synthetic
    ids = [sorted(torch.cat([bb['index'][bb['is_synthetic']] for bb in ep]).tolist()) for ep in epochs]
    assert ids[0] != ids[1]
    b = next(bb for bb in epochs[0] if bb['is_synthetic'].any())
    s = b['is_synthetic']
    assert torch.allclose(b['target'][s].max(1).values, torch.tensor(0.775)) and not b['has_mask'][s].any()
    assert (b['mask'][s] == 0).all() and b['has_mask'][~s].all()
    with pytest.raises(MtlsynError, match='pool'): dataloaders(phantom_split, None, ratio=1.0)

def test_pool_roundtrip_without_pickle(tmp_path, phantom_split):
    u = phantom_split.unlabeled
    pool = SyntheticPool(u.images[:20], u.labels[:20], u.captions[:20], u.masks[:20], dict(generator='copy', seed=1))
    p = pool.save(tmp_path/'pool.npz')
    with np.load(p, allow_pickle=False) as z: assert set(z.files) == {'images', 'labels', 'captions', 'masks'}
    back = SyntheticPool.load(p)
    assert back.sha256 == pool.sha256 and back.provenance == pool.provenance and back.captions == pool.captions
    assert json.loads((tmp_path/'pool.json').read_text())['sha256'] == pool.sha256
    with pytest.raises(MtlsynError, match='length'): SyntheticPool(u.images[:3], u.labels[:2], ['a']*3)

def test_multilabel_and_rgb_batches(tmp_path):
    fake_npz(tmp_path/'chestmnist.npz', 'chestmnist'); fake_npz(tmp_path/'pathmnist.npz', 'pathmnist')
    dls = dataloaders(load_benchmark('chestmnist', budget=2, root=tmp_path, verify=False), bs=8, device='cpu')
    b, _ = dls.one_batch()
    assert b['label'].dtype == torch.float32 and b['label'].shape[1] == 14 and torch.equal(b['label'], b['target'])
    assert 'mask' not in b and all(t.startswith('a chest x-ray showing') for t in b['text'])
    b, _ = dataloaders(load_benchmark('pathmnist', budget=2, root=tmp_path, verify=False), bs=8, device='cpu').one_batch()
    assert b['image'].shape[1] == 3 and len(dls.stats['mean']) == 1

def test_unlabeled_loader_hides_labels(phantom_split):
    b, _ = unlabeled_dl(phantom_split, bs=32, device='cpu').one_batch()
    assert (b['label'] == -1).all() and set(b['text']) == {'a chest x-ray.'} and len(b['image']) == 32

def test_show_batch_draws(phantom_split):
    import matplotlib; matplotlib.use('Agg')
    fig = dataloaders(phantom_split, bs=8, device='cpu').show_batch(max_n=4)
    assert len([a for a in fig.axes if a.images]) == 4

def _small_cnn_val_auc(difficulty, epochs=15, per_class=50):
    "Val AUC (one-vs-rest, macro) of a 3-layer CNN trained on `per_class` phantoms per class at 28 px"
    import torch.nn as nn, torch.nn.functional as F
    from sklearn.metrics import roc_auc_score
    torch.manual_seed(0); nt = torch.get_num_threads(); torch.set_num_threads(1)
    try:
        sp = load_phantom(size=28, budget=per_class, seed=0, difficulty=difficulty)
        f = lambda s: (torch.tensor(s.images).permute(0, 3, 1, 2).float()/255 - 0.3)/0.2
        X, y, Xv = f(sp.labeled), torch.tensor(sp.labeled.labels), f(sp.val)
        net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
                            nn.Flatten(), nn.Linear(64, 4))
        opt = torch.optim.Adam(net.parameters(), 2e-3)
        for _ in range(epochs):
            net.train(); perm = torch.randperm(len(X))
            for i in range(0, len(X), 32):
                bi = perm[i:i+32]; loss = F.cross_entropy(net(X[bi]), y[bi]); opt.zero_grad(); loss.backward(); opt.step()
        net.eval()
        with torch.no_grad(): p = net(Xv).softmax(1).numpy()
        return roc_auc_score(sp.val.labels, p, multi_class='ovr')
    finally: torch.set_num_threads(nt)

def test_phantom_default_is_learnable_and_hardest_is_not():
    "50 labeled images per class: a small CNN separates the classes at the default difficulty, not at the hardest"
    assert _small_cnn_val_auc(0.3) >= 0.9
    assert _small_cnn_val_auc(1.0) < 0.9

def test_download_only_when_asked_and_checked(tmp_path, monkeypatch):
    "A download (here from a file:// URL) lands atomically and is MD5-checked; a failed one leaves nothing behind"
    src = fake_npz(tmp_path/'src.npz', 'breastmnist')
    info = dict(INFO['breastmnist'], url=src.as_uri(), MD5=mm.file_md5(src))
    monkeypatch.setitem(INFO, 'breastmnist', info)          # the download URL and MD5 come from medmnist's metadata
    root = tmp_path/'root'
    with pytest.raises(MtlsynError, match='not found'): load_benchmark('breastmnist', root=root)
    sp = load_benchmark('breastmnist', budget=2, root=root, download=True)
    assert (root/'breastmnist.npz').exists() and sp.record['source_md5'] == info['MD5']
    (root/'breastmnist.npz').unlink()
    info['MD5'] = '0'*32
    with pytest.raises(MtlsynError, match='MD5 mismatch'): load_benchmark('breastmnist', root=root, download=True)
    info['url'] = (tmp_path/'gone.npz').as_uri()
    with pytest.raises(MtlsynError, match='downloading breastmnist.npz failed') as e: load_benchmark('breastmnist', root=root, download=True)
    assert str(root) in str(e.value) and info['url'] in str(e.value)
    assert list(root.iterdir()) == []

def test_pool_that_does_not_fit_the_benchmark_is_refused(phantom_split):
    small = SyntheticPool(np.zeros((4, 14, 14, 1), np.uint8), np.zeros(4, np.int64), ['x']*4)
    with pytest.raises(MtlsynError, match='benchmark'): dataloaders(phantom_split, small, ratio=1.0, device='cpu')
    masks3 = SyntheticPool(np.zeros((4, 28, 28, 1), np.uint8), np.zeros(4, np.int64), ['x']*4, np.zeros((4, 3, 28, 28), np.uint8))
    with pytest.raises(MtlsynError, match='channels'): dataloaders(phantom_split, masks3, ratio=1.0, device='cpu')

# ---------------------------------------------------------------- val budget, captions, paraphrases (issue 10)

def test_val_budget_keeps_the_labeled_split_and_records_the_val_draw():
    full = load_benchmark('phantom', size=28, budget=10, seed=0)
    small = load_benchmark('phantom', size=28, budget=10, seed=0, val_budget=10)
    assert small.record['split_sha256'] == full.record['split_sha256']
    assert (small.labeled.indices == full.labeled.indices).all()
    assert small.record['val_budget'] == 10 and small.record['n_val'] == len(small.val) == 40
    assert full.record['val_budget'] == 'all' and full.record['val_sha256'] == indices_sha256(np.arange(400))
    assert np.bincount(small.val.labels).tolist() == [10]*4
    assert (small.val.images == full.val.images[small.val.indices]).all()
    again = load_benchmark('phantom', size=28, budget=10, seed=0, val_budget=10)
    assert again.record['val_sha256'] == small.record['val_sha256']
    assert load_benchmark('phantom', size=28, budget=10, seed=1, val_budget=10).record['val_sha256'] != small.record['val_sha256']
    assert load_benchmark('phantom', size=28, budget=10, seed=0, val_budget=0.5).record['n_val'] == 200
    with pytest.raises(MtlsynError, match='val images'): load_benchmark('phantom', size=28, budget=10, val_budget=500)

def test_caption_choice_and_paraphrases(phantom_split):
    from mtlsyn.data.text import caption_options, captions_kind
    d = dataloaders(phantom_split, bs=40, device='cpu')
    assert d.captions_kind == 'report' and d.one_batch()[0]['text'][0].endswith('.') and 'x-ray' not in d.one_batch()[0]['text'][0]
    c = dataloaders(phantom_split, bs=40, device='cpu', captions='class')
    assert c.captions_kind == 'class' and set(c.valid.one_batch()[0]['text']) == set(class_prompts('phantom'))
    p = dataloaders(phantom_split, bs=40, device='cpu', captions='class', prompts=3)
    assert p.captions_kind == 'paraphrase'
    texts = [t for _ in range(5) for bb, _ in p.train for t in bb['text']]
    assert len(set(texts)) == 12                                      # 3 paraphrases of 4 classes, drawn per image each epoch
    assert set(p.valid.one_batch()[0]['text']) == set(class_prompts('phantom'))   # val keeps the run's template
    opts = caption_options(phantom_split.labeled, phantom_split.info, captions='class', prompts=2)
    assert opts[0][0] == class_prompts('phantom')[phantom_split.labeled.labels[0]]
    assert captions_kind(phantom_split.labeled) == 'report'
    with pytest.raises(MtlsynError, match='captions'): dataloaders(phantom_split, captions='words')
    with pytest.raises(MtlsynError, match='prompts'): dataloaders(phantom_split, prompts=0)

def test_default_captions_and_batches_are_unchanged(phantom_split):
    a, b = dataloaders(phantom_split, bs=16, device='cpu', seed=3), dataloaders(phantom_split, bs=16, device='cpu', seed=3, captions='report', prompts=1)
    for (x, _), (y, _) in zip(a.train, b.train):
        assert x['text'] == y['text'] and torch.equal(x['image'], y['image'])
    assert next(iter(a.train))[0]['text'][0] in phantom_split.labeled.captions
