"Reliability of caches (issue 11, classes 1, 3-cache-locks, 5, 6, 11-umask): keys cover what a cache depends on, damaged files are rebuilt, one builder per entry, readable files, no pickle"
import json, multiprocessing as mp, os, re, signal, time
from pathlib import Path
import numpy as np, pytest, torch
from medmnist import INFO
from safetensors import safe_open
from safetensors.torch import load_file, save_file
import mtlsyn.augment.all  # noqa: F401  (registers every generator)
import mtlsyn.augment.core as ac
import mtlsyn.data.medmnist as mm
from mtlsyn.core import MtlsynError, atomic_write, cache_dir
from mtlsyn.augment.core import generators, make_pool
from mtlsyn.data.all import load_benchmark
from mtlsyn.data.medmnist import cache_lock, check_sidecar, file_sha256, write_checked
from mtlsyn.data.phantom import _phantom_cache, load_phantom
from mtlsyn.test_utils import tiny_split

torch.set_num_threads(1)
FORK = mp.get_context('fork')

@pytest.fixture
def s28(): return tiny_split(n_train=32)   # 28 px, load_benchmark's default size

# ---------------------------------------------------------------- 1. caches keyed by everything they depend on

def test_phantom_difficulties_get_their_own_pools():
    easy = tiny_split(n_train=32, size=28, difficulty=0.05); hard = tiny_split(n_train=32, size=28, difficulty=0.95)
    assert easy.record['split_sha256'] == hard.record['split_sha256']          # same labeled indices ...
    pe, ph = make_pool(easy, 'mixup', 16), make_pool(hard, 'mixup', 16)       # ... different images
    assert pe.provenance['pool_key'] != ph.provenance['pool_key'] and pe.sha256 != ph.sha256
    assert ph.sha256 == make_pool(hard, 'mixup', 16, cache=False).sha256      # the hard pool is built from the hard images
    assert len([d for d in cache_dir('pools').iterdir() if d.is_dir()]) == 2
    assert pe.provenance['source_sha256'] != ph.provenance['source_sha256']

def test_pool_key_covers_size_labels_and_config(s28):
    s64 = tiny_split(n_train=32, size=64)
    keys = {ac.pool_key(s28, 'mixup', 16), ac.pool_key(s64, 'mixup', 16), ac.pool_key(s28, 'mixup', 16, alpha=1.0)}
    relab = tiny_split(n_train=32, size=28); relab.labeled.labels = (relab.labeled.labels + 1) % 4
    keys.add(ac.pool_key(relab, 'mixup', 16))
    assert len(keys) == 4 and ac.pool_key(s28, 'mixup', 16) == ac.pool_key(tiny_split(n_train=32, size=28), 'mixup', 16)

def test_img2img_pools_follow_the_pipeline_content(s28, tmp_path):
    pipe = tmp_path/'pipe'; (pipe/'unet').mkdir(parents=True)
    w = pipe/'unet'/'diffusion_pytorch_model.safetensors'; w.write_bytes(b'weights v1')
    k1 = ac.pool_key(s28, 'diffusion-img2img', 4, pipeline=str(pipe))
    w.write_bytes(b'weights v2')                                               # same folder, other weights
    assert ac.pool_key(s28, 'diffusion-img2img', 4, pipeline=str(pipe)) != k1

def test_64px_fit_does_not_resume_a_28px_checkpoint(s28, tmp_path):
    s64 = tiny_split(n_train=32, size=64)
    assert s64.record['split_sha256'] == s28.record['split_sha256']
    fit = lambda s: generators.build('diffusion', config='tiny', progress=False, ckpt_dir=str(tmp_path)).set_random_state(0).fit(s)
    g28 = fit(s28); g64 = fit(s64)
    assert g28.resumed_from == 0 and g64.resumed_from == 0 and g64.ckpt_path != g28.ckpt_path
    assert g64.sample(2).images.shape[1:] == (64, 64, 1)
    assert fit(s28).resumed_from == 4                                            # its own finished fit still loads

# ---------------------------------------------------------------- 6. damaged but loadable cache files

def test_scaled_weight_checkpoint_is_detected_and_refit(s28, tmp_path):
    fit = lambda: generators.build('diffusion', config='tiny', progress=False, ckpt_dir=str(tmp_path)).set_random_state(0).fit(s28)
    g = fit(); p = g.sample(8); f = g.ckpt_path
    with safe_open(str(f), 'pt') as h: meta = h.metadata()
    save_file({k: v*100 if v.is_floating_point() else v for k, v in load_file(str(f)).items()}, str(f), metadata=meta)
    with pytest.warns(UserWarning, match='damaged.*sidecar'): g2 = fit()
    q = g2.sample(8)
    assert g2.resumed_from == 0 and q.sha256 == p.sha256 and q.images.std() > 0   # refit to the same weights, not black
    check_sidecar(f)
    # non-finite weights behind a matching sidecar are caught by the finiteness check
    t = load_file(str(f)); t['ema.conv_out.weight'][0] = float('nan')
    write_checked(f, lambda tmp: save_file(t, str(tmp), metadata=meta))
    with pytest.warns(UserWarning, match='non-finite'): assert fit().resumed_from == 0

def test_relabelled_or_reshaped_phantom_cache_is_regenerated():
    kw = dict(size=28, n_train=40, n_val=8, n_test=8)
    sp = load_phantom(budget='all', **kw)
    path = _phantom_cache(28, 0.3, 40, 8, 8, 0)[0]
    with np.load(path) as z: d = dict(z)
    bad = {**d, 'train_labels': (d['train_labels'] + 1) % 4}
    with open(path, 'wb') as f: np.savez(f, **bad)
    with pytest.warns(UserWarning, match='phantom cache .* damaged'): again = load_phantom(budget='all', **kw)
    assert (again.labeled.labels == sp.labeled.labels).all() and again.record['source_md5'] == sp.record['source_md5']
    check_sidecar(path)
    bad = {**d, 'val_images': d['val_images'][:3]}                           # a matching sidecar, the wrong shape
    write_checked(path, lambda tmp: np.savez(open(tmp, 'wb'), **bad))
    with pytest.warns(UserWarning, match='wrong shapes'): again = load_phantom(budget='all', **kw)
    assert (again.val.images == sp.val.images).all()

def test_wrong_shaped_or_nan_feature_file_is_rebuilt():
    from mtlsyn.augment.quality import encode
    imgs = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    a = encode(imgs, size=32)
    [f] = cache_dir('features').glob('*.npy')
    np.save(f, a[:, :10])                                                       # wrong shape, sidecar stale
    with pytest.warns(UserWarning, match='feature file .* damaged'): b = encode(imgs, size=32)
    np.testing.assert_array_equal(a, b)
    nan = a.copy(); nan[0, 0] = np.nan
    write_checked(f, lambda tmp: np.save(open(tmp, 'wb'), nan))               # NaN behind a matching sidecar
    with pytest.warns(UserWarning, match='non-finite'): c = encode(imgs, size=32)
    np.testing.assert_array_equal(a, c)

def test_pool_entry_with_wrong_size_or_labels_is_rebuilt(s28):
    p = make_pool(s28, 'mixup', 16, seed=3); d = cache_dir('pools')/p.provenance['pool_key']
    bad = ac.SyntheticPool(p.images[:8], p.labels[:8], p.captions[:8], provenance=p.provenance)
    bad.save(d/'pool.npz'); (d/'manifest.json').write_text(json.dumps(dict(sha256=bad.sha256)))   # consistent, but 8 of 16
    with pytest.warns(UserWarning, match='damaged'): q = make_pool(s28, 'mixup', 16, seed=3)
    assert q.sha256 == p.sha256

# ---------------------------------------------------------------- 5. MD5 passes cannot be forged

def _pneumonia_like(path, seed=0):
    rng = np.random.default_rng(seed)
    d = {}
    for s, m in (('train', 40), ('val', 8), ('test', 8)):
        d[f'{s}_images'] = rng.integers(0, 256, (m, 28, 28), dtype=np.uint8)
        d[f'{s}_labels'] = (np.arange(m) % 2)[:, None].astype(np.uint8)
    np.savez(path, **d)
    return d

def test_forged_md5_pass_is_refused(tmp_path, monkeypatch):
    f = tmp_path/'pneumoniamnist.npz'; d = _pneumonia_like(f)
    monkeypatch.setitem(INFO['pneumoniamnist'], 'MD5', mm.file_md5(f))       # pretend it is the official file
    time.sleep(1.1)                                                            # older than the racy window: its pass is remembered
    sp = load_benchmark('pneumoniamnist', budget=5, root=tmp_path)
    assert sp.record['verified'] and len(list(cache_dir('md5').glob('*.json'))) == 1
    st = f.stat()
    d['train_labels'] = 1 - d['train_labels']                                  # every label inverted ...
    with open(f, 'r+b') as h: np.savez(h, **d)                                 # ... in place: same inode, same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))                           # ... and the old modification time
    assert (f.stat().st_ino, f.stat().st_size, f.stat().st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    with pytest.raises(MtlsynError, match='MD5 mismatch'): load_benchmark('pneumoniamnist', budget=5, root=tmp_path)

def test_replaced_or_racily_new_file_is_hashed_again(tmp_path, monkeypatch):
    f = tmp_path/'x.npz'; d = _pneumonia_like(f); md5 = mm.file_md5(f)
    calls = []; real = mm.file_md5
    monkeypatch.setattr(mm, 'file_md5', lambda p, *a: calls.append(p) or real(p, *a))
    mm.check_md5(f, md5); mm.check_md5(f, md5)
    assert len(calls) == 2 and not list(cache_dir('md5').glob('*.json'))     # just written: never remembered
    time.sleep(1.1); mm.check_md5(f, md5); mm.check_md5(f, md5)
    assert len(calls) == 3                                                     # remembered once old enough
    st = f.stat(); d['test_labels'] = 1 - d['test_labels']; g = tmp_path/'y.npz'; np.savez(g, **d)
    os.replace(g, f); os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))       # another file, same name, size and mtime
    with pytest.raises(MtlsynError, match='MD5 mismatch'): mm.check_md5(f, md5)

# ---------------------------------------------------------------- 3. one builder per cache entry

def _child(fn, out, barrier):
    barrier.wait()
    try: out.write_text(json.dumps(fn()))
    finally: os._exit(0)

def _race(fn, tmp_path, n=2):
    barrier = FORK.Barrier(n); outs = [tmp_path/f'out{i}.json' for i in range(n)]
    ps = [FORK.Process(target=_child, args=(fn, o, barrier)) for o in outs]
    for p in ps: p.start()
    for p in ps: p.join(120)
    assert all(p.exitcode == 0 for p in ps) and all(o.exists() for o in outs)
    return [json.loads(o.read_text()) for o in outs]

def test_concurrent_processes_build_a_pool_once(s28, tmp_path, monkeypatch):
    marker, real = tmp_path/'builds.log', ac._build_pool
    def counted(*a, **k):
        with open(marker, 'a') as f: f.write(f"{os.getpid()}\n")
        time.sleep(0.5)                                                        # widen the window a second builder would use
        return real(*a, **k)
    monkeypatch.setattr(ac, '_build_pool', counted)
    shas = _race(lambda: make_pool(s28, 'mixup', 24, seed=5).sha256, tmp_path)
    assert len(marker.read_text().split()) == 1 and shas[0] == shas[1]

def test_concurrent_processes_fit_a_checkpoint_once(s28, tmp_path):
    fit = lambda: generators.build('diffusion', config='tiny', progress=False, ckpt_dir=str(tmp_path/'ck')).set_random_state(0).fit(s28).resumed_from
    assert sorted(_race(fit, tmp_path)) == [0, 4]                              # one trains from step 0, the other loads step 4

def test_lock_of_a_killed_process_is_released(s28, tmp_path):
    key = cache_dir('pools')/ac.pool_key(s28, 'mixup', 8)
    ready = FORK.Event()
    def hold():
        with cache_lock(key): ready.set(); time.sleep(600)
    p = FORK.Process(target=hold); p.start(); assert ready.wait(60)
    os.kill(p.pid, signal.SIGKILL); p.join()
    signal.alarm(60)                                                           # a stale lock must not hang the test
    try: assert len(make_pool(s28, 'mixup', 8)) == 8
    finally: signal.alarm(0)

# ---------------------------------------------------------------- 11. files readable by collaborators

def test_atomic_write_and_caches_follow_the_umask(s28, tmp_path):
    old = os.umask(0o022)
    try:
        assert atomic_write(tmp_path/'a.txt', 'x').stat().st_mode & 0o777 == 0o644
        p = make_pool(s28, 'mixup', 8, seed=9); d = cache_dir('pools')/p.provenance['pool_key']
        assert {f.stat().st_mode & 0o777 for f in d.iterdir()} == {0o644}
        os.umask(0o077)
        assert atomic_write(tmp_path/'b.txt', b'x').stat().st_mode & 0o777 == 0o600
        os.umask(0o002)
        assert atomic_write(tmp_path/'c.txt', lambda q: Path(q).write_text('x')).stat().st_mode & 0o777 == 0o664
    finally: os.umask(old)

# ---------------------------------------------------------------- security stays

def test_pickled_pool_is_rebuilt_never_unpickled(s28, tmp_path):
    p = make_pool(s28, 'mixup', 8, seed=4); d = cache_dir('pools')/p.provenance['pool_key']
    flag = tmp_path/'pwned'
    class Payload:
        def __reduce__(self): return (Path.touch, (flag,))
    np.savez(d/'pool.npz', images=np.array([Payload()], dtype=object), labels=p.labels, captions=np.array(p.captions))
    with pytest.warns(UserWarning, match='damaged'): q = make_pool(s28, 'mixup', 8, seed=4)
    assert q.sha256 == p.sha256 and not flag.exists()

def test_cache_code_never_unpickles():
    root = Path(mm.__file__).parents[1]
    for f in ['data/medmnist.py', 'data/phantom.py', 'augment/core.py', 'augment/diffusion.py', 'augment/quality.py', 'data/loaders.py']:
        src = (root/f).read_text()
        assert 'import pickle' not in src and 'allow_pickle=True' not in src, f
        assert all('weights_only=True' in m for m in re.findall(r'torch\.load\([^\n]*', src)), f
        assert all('allow_pickle=False' in m for m in re.findall(r'np\.load\([^\n]*', src)), f

def test_sidecar_helpers(tmp_path):
    f = write_checked(tmp_path/'a.bin', b'abc')
    assert Path(f'{f}.sha256').read_text().strip() == file_sha256(f)
    check_sidecar(f); f.write_bytes(b'abd')
    with pytest.raises(ValueError, match='differs'): check_sidecar(f)
    with pytest.raises(ValueError, match='no content-hash sidecar'): check_sidecar(tmp_path/'nope')
