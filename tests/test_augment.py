"Generators, pools and their cache, and the quality measures: what a user of mtlsyn.augment would notice if it broke"
import json, warnings
import numpy as np, pytest, torch
from mtlsyn.core import MtlsynError, cache_dir
from mtlsyn.augment.core import generators, make_pool
from mtlsyn.test_utils import tiny_split
from mtlsyn.augment.quality import frechet_distance, fid_from_features, memorised_share, balanced_accuracy
import mtlsyn.augment.all  # noqa: F401  (registers every generator)

torch.set_num_threads(1)

@pytest.fixture(scope='module')
def split(): return tiny_split(n_train=48)

def test_registry_names_every_generator():
    assert {'classical', 'mixup', 'cutmix', 'diffusion', 'diffusion-img2img'} <= set(generators.names())
    with pytest.raises(MtlsynError, match='choose one of'): generators.build('gan')

@pytest.mark.parametrize('name', ['classical', 'mixup', 'cutmix'])
def test_same_seed_same_pool_other_seed_other_pool(split, name):
    a = make_pool(split, name, 24, seed=0, cache=False); b = make_pool(split, name, 24, seed=0, cache=False)
    c = make_pool(split, name, 24, seed=1, cache=False)
    assert a.sha256 == b.sha256 and a.sha256 != c.sha256
    assert a.images.dtype == np.uint8 and a.images.shape[1:] == split.labeled.images.shape[1:]
    assert a.provenance['generator'] == name and a.provenance['split_sha256'] == split.record['split_sha256']

def test_cache_reuses_and_rebuilds_damaged_entry(split):
    p1 = make_pool(split, 'mixup', 16, seed=2)
    d = cache_dir('pools')/p1.provenance['pool_key']
    assert make_pool(split, 'mixup', 16, seed=2).sha256 == p1.sha256
    (d/'pool.npz').write_bytes(b'not a zip file')
    with pytest.warns(UserWarning, match='damaged'): p3 = make_pool(split, 'mixup', 16, seed=2)
    assert p3.sha256 == p1.sha256
    # a different config is a different pool
    assert make_pool(split, 'mixup', 16, seed=2, alpha=1.0).provenance['pool_key'] != p1.provenance['pool_key']

def test_classical_never_flips_chest_radiographs_by_default(split):
    g = generators.build('classical').set_random_state(0).fit(split)
    assert 'chest' in split.info.modality and g.cfg['hflip'] == 0.0
    p = g.sample(16)
    if p.masks is not None: assert set(np.unique(p.masks)) <= {0, 1}
    assert (p.labels == split.labeled.labels[p.provenance['source_index']]).all()
    with pytest.raises(MtlsynError, match='unknown classical option'): generators.build('classical', flip=1)

def test_mix_semantics(split):
    K = len(split.info.classes)
    for name in ['mixup', 'cutmix']:
        p = make_pool(split, name, 32, cache=False)
        assert p.labels.dtype == np.float32 and p.labels.shape == (32, K)
        np.testing.assert_allclose(p.labels.sum(1), 1, atol=1e-5)
        lam, i, j = (np.array(p.provenance[k]) for k in ['lam', 'source_index', 'partner_index'])
        dom = np.where(lam >= 0.5, i, j)
        caps = split.labeled.captions if split.labeled.captions is not None else None
        if caps is not None: assert p.captions == [caps[k] for k in dom]   # caption of the dominant image
        assert (p.hard_labels() == p.labels.argmax(1)).all()
    with pytest.raises(MtlsynError): generators.build('mixup', alpha=0)

def test_diffusion_tiny_fit_sample_and_img2img(split, tmp_path):
    g = generators.build('diffusion', config='tiny', progress=False, ckpt_dir=str(tmp_path)).set_random_state(0).fit(split)
    p = g.sample(5)
    assert p.images.shape == (5,) + split.labeled.images.shape[1:] and p.labels.dtype == np.int64
    assert g.ckpt_path.exists()    # loading a finished fit and resuming an interrupted one: nbs/02c_augment.diffusion.ipynb
    pipe = g.save_pipeline(tmp_path/'pipe')
    ia = generators.build('diffusion-img2img', pipeline=str(pipe), strength=0.5, ddim_steps=4, progress=False).set_random_state(0).fit(split)
    q = ia.sample(4)
    assert q.images.shape == (4,) + split.labeled.images.shape[1:]
    with pytest.raises(MtlsynError, match='no diffusers pipeline'): generators.build('diffusion-img2img', pipeline=str(tmp_path/'nope')).fit(split)
    with pytest.raises(MtlsynError, match='unknown diffusion option'): generators.build('diffusion', stepz=3)

def test_frechet_matches_closed_form():
    rng = np.random.default_rng(1)
    a, b, m1, m2 = rng.uniform(.5, 2, 8), rng.uniform(.5, 2, 8), rng.normal(size=8), rng.normal(size=8)
    exp = ((m1-m2)**2).sum() + ((np.sqrt(a)-np.sqrt(b))**2).sum()
    assert abs(frechet_distance(m1, np.diag(a), m2, np.diag(b)) - exp) < 1e-9
    assert abs(frechet_distance(m1, np.diag(a), m1, np.diag(a))) < 1e-9
    assert np.isfinite(fid_from_features(rng.normal(size=(5, 100)), rng.normal(size=(7, 100))))

def test_memorisation_and_balanced_accuracy(split):
    copies = make_pool(split, 'copy', 20, cache=False)
    assert memorised_share(split.labeled.images, copies.images)['memorised_share'] == 1.0
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.5
