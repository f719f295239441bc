"3D: MedMNIST 3D loaders on generated files, the volumetric phantom, 3D encoders, 5-D batches through the model, and the phantom3d study"
import dataclasses
from pathlib import Path
import numpy as np
import pytest
import torch
from medmnist import INFO
from mtlsyn.core import MtlsynError
from mtlsyn.data.all import load_benchmark, benchmarks
from mtlsyn.data.medmnist import FLAGS, FLAGS_3D, medmnist_info, medmnist_filename, file_md5
from mtlsyn.data.phantom3d import make_phantoms3d, PHANTOM_CLASSES
from mtlsyn.data.loaders import dataloaders
from mtlsyn.data.text import class_prompts
import mtlsyn.model.all  # noqa: F401  (every encoder registers itself)
from mtlsyn.model.encoders import build_image_encoder, image_encoders
from mtlsyn.model.vlm import build_vlm
from mtlsyn.learner import mtl_learner
from mtlsyn.study.config import load_study, study_runs
from mtlsyn.study.runner import build_run

STUDY = Path(__file__).parents[1]/'studies'/'phantom3d.yaml'

def fake_npz3d(path, flag, size=28, n=(4, 2, 2), seed=0, **override):
    "A small npz with MedMNIST 3D's six keys and per-sample shapes: uint8 (N,S,S,S) volumes, (N,1) labels"
    info, rng, d = medmnist_info(flag, size), np.random.default_rng(seed), {}
    for s, m in zip(('train', 'val', 'test'), n):
        d[f'{s}_images'] = rng.integers(0, 256, (m, size, size, size), dtype=np.uint8)
        d[f'{s}_labels'] = (np.arange(m) % info.n_classes)[:, None].astype(np.uint8)
    d.update(override)
    np.savez_compressed(path, **d)
    return Path(path)

# ---------------------------------------------------------------- MedMNIST 3D

def test_every_3d_flag_is_a_benchmark():
    assert set(FLAGS_3D) == {f for f in INFO if f.endswith('3d')} and not set(FLAGS_3D) & set(FLAGS)
    assert set(FLAGS_3D) <= set(benchmarks.names())
    for f in FLAGS_3D: assert len(class_prompts(f)) == len(INFO[f]['label'])   # words for every class

@pytest.mark.parametrize('size', [28, 64])
@pytest.mark.parametrize('flag', FLAGS_3D)
def test_3d_loader_reads_a_file_shaped_like_the_official_one(tmp_path, flag, size):
    fn = medmnist_filename(flag, size)
    assert fn in INFO[flag]['url' if size == 28 else f'url_{size}']   # the official file name
    fake_npz3d(tmp_path/fn, flag, size)
    sp = load_benchmark(flag, size=size, root=tmp_path, verify=False)
    assert sp.labeled.images.shape == (4, size, size, size, 1) and sp.labeled.images.dtype == np.uint8
    assert sp.info.classes == [INFO[flag]['label'][str(k)] for k in range(len(INFO[flag]['label']))]
    assert sp.info.task == INFO[flag]['task'] and (sp.record['n_val'], sp.record['n_test']) == (2, 2)

def test_3d_md5_checked_against_info(tmp_path, monkeypatch):
    p = fake_npz3d(tmp_path/'nodulemnist3d.npz', 'nodulemnist3d', n=(6, 2, 2))
    with pytest.raises(MtlsynError, match='MD5 mismatch'): load_benchmark('nodulemnist3d', root=tmp_path)
    monkeypatch.setitem(INFO['nodulemnist3d'], 'MD5', file_md5(p))   # as if it were the official file
    sp = load_benchmark('nodulemnist3d', budget=2, root=tmp_path)
    assert sp.record['verified'] and sp.record['source_md5'] == file_md5(p) and sp.record['labeled_per_class'] == [2, 2]

def test_3d_loader_refuses_wrong_shapes_and_sizes(tmp_path):
    flat = np.zeros((4, 28, 28), np.uint8)
    fake_npz3d(tmp_path/'vesselmnist3d.npz', 'vesselmnist3d', train_images=flat)
    with pytest.raises(MtlsynError, match=r'train_images is uint8 \(4, 28, 28\), expected uint8 \(N,28,28,28\)'):
        load_benchmark('vesselmnist3d', root=tmp_path, verify=False)
    with pytest.raises(MtlsynError, match='not a MedMNIST 3D size: choose one of 28, 64'):
        load_benchmark('vesselmnist3d', size=128, root=tmp_path, verify=False)

# ---------------------------------------------------------------- the volumetric phantom

def test_phantom3d_volumes_masks_and_reports():
    s = make_phantoms3d(16, size=28, seed=3)
    assert s.images.shape == (16, 28, 28, 28, 1) and s.masks.shape == (16, 2, 28, 28, 28)
    assert np.bincount(s.labels, minlength=4).tolist() == [4]*4
    np.testing.assert_array_equal(make_phantoms3d(16, size=28, seed=3, chunk=5).images, s.images)
    les, lung = s.masks[:, 1].astype(bool), s.masks[:, 0].astype(bool)
    assert not les[s.labels == 0].any() and all(les[s.labels == k].any(axis=(1, 2, 3)).all() for k in (1, 2, 3))
    assert (les & ~lung).sum() <= 0.1*les.sum()                   # lesions lie (almost wholly) in the lungs
    for k, word in ((0, 'No acute'), (1, 'consolidation'), (2, 'nodule'), (3, 'effusion')):
        assert all(word in c for c, y in zip(s.captions, s.labels) if y == k), PHANTOM_CLASSES[k]

def test_phantom3d_benchmark_is_cut_like_medmnist():
    kw = dict(n_train=40, n_val=12, n_test=12)
    sp = load_benchmark('phantom3d', size=28, budget=5, seed=1, **kw)
    assert sp.record['labeled_per_class'] == [5]*4 and sp.labeled.images.shape[1:] == (28, 28, 28, 1)
    assert (sp.record['n_unlabeled'], sp.record['n_val'], sp.record['n_test']) == (20, 12, 12)
    assert load_benchmark('phantom3d', size=28, budget=5, seed=1, **kw).record['split_sha256'] == sp.record['split_sha256']
    with pytest.raises(MtlsynError, match='choose 28 or 64'): load_benchmark('phantom3d', size=32)

# ---------------------------------------------------------------- 5-D batches through the model

def test_5d_batches_train_a_3d_cnn():
    torch.manual_seed(0)
    sp = load_benchmark('phantom3d', size=28, budget=5, seed=0, n_train=40, n_val=20, n_test=8)
    dls = dataloaders(sp, bs=10, seed=0, device='cpu')
    b = dls.one_batch()[0]
    assert b['image'].shape == (10, 1, 28, 28, 28) and b['mask'].shape == (10, 2, 28, 28, 28)
    assert abs(float(b['image'].mean())) < 0.5                   # normalised with the volumes' own statistics
    model = build_vlm('small-cnn3d', 'learned', tasks=['classify', 'contrastive'], info=sp.info)
    learn = mtl_learner(dls, model, lr=3e-3)
    assert not learn.channels_last                               # no 4-D memory layout for 5-D weights
    with learn.no_logging(), learn.no_bar(): learn.fit(1)
    m = learn.evaluate()
    assert 0 <= m['classify_auc'] <= 1 and np.isfinite(m['loss'])
    with pytest.raises(MtlsynError, match='encodes volumes'): model.image_encoder(torch.zeros(2, 1, 28, 28))

def test_3d_encoders_are_registered():
    assert {'small-cnn3d', 'resnet18-3d'} <= set(image_encoders.names())
    o = build_image_encoder('small-cnn3d', width=4)(torch.zeros(2, 1, 28, 28, 28))
    assert o['feat'].shape == (2, 16) and o['fmap'].shape == (2, 16, 4, 4, 4)

# ---------------------------------------------------------------- the study (its full run is a slow notebook cell)

def test_phantom3d_study_is_two_settings_by_two_seeds_and_one_run_trains():
    runs = study_runs(load_study(STUDY))
    assert len(runs) == 4 and len({r.setting for r in runs}) == 2 and {r.seed for r in runs} == {0, 1}
    assert {r.benchmark for r in runs} == {'phantom3d'} and {r.image_encoder for r in runs} == {'small-cnn3d'}
    mtl = next(r for r in runs if r.tasks == ['classify', 'contrastive'])
    small = dict(n_train=100, n_val=100, n_test=20)   # the study's split, fewer unlabeled and test volumes: the test stays short
    b = build_run(dataclasses.replace(mtl, epochs=1, benchmark_kwargs=small), device='cpu').fit()
    rec = b.record()
    assert rec['status'] == 'ok' and 0 <= rec['test_classify_auc'] <= 1 and rec['cfg_tasks'] == 'classify+contrastive'
