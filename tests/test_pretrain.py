"Multi-dataset pre-training (issue 13): sampling rules, input adaptation, train-only data, step bound, content-hash cache, safetensors with provenance, and a pre-trained encoder carried from one study into another"
import json, os
from pathlib import Path
import numpy as np, pytest, torch
from mtlsyn.core import MtlsynError
from mtlsyn.data.core import load_benchmark
from mtlsyn.data.multi import sampling_probs, load_pretrain_set, MultiDataset, PretrainSet
from mtlsyn.learner.pretrain import PretrainConfig, pretrain, cached_pretrain, MultiDatasetModel, pretrain_key
from mtlsyn.model.encoders import build_image_encoder, load_encoder_weights, read_encoder_provenance

PH = dict(n_train=120, n_val=20, n_test=20)

def test_sampling_rules():
    s = dict(a=900, b=100)
    assert sampling_probs(s, 'proportional') == pytest.approx(dict(a=.9, b=.1))
    assert sampling_probs(s, 'uniform') == pytest.approx(dict(a=.5, b=.5))
    assert sampling_probs(s, 'temperature', 2.) == pytest.approx(dict(a=.75, b=.25))
    with pytest.raises(MtlsynError, match='choose one of'): sampling_probs(s, 'sqrt')

def test_pretrain_set_is_train_only():
    ps = load_pretrain_set('phantom', 28, probe=12, **PH)
    sp = load_benchmark('phantom', size=28, **PH)
    rows = lambda a: {x.tobytes() for x in a}
    assert rows(ps.images) | rows(ps.probe) <= rows(sp.labeled.images)          # the train split
    assert not rows(ps.images) & (rows(sp.val.images) | rows(sp.test.images))  # never val or test
    assert not rows(ps.images) & rows(ps.probe)                               # probe held out of pre-training

def test_mixed_batches_adapt_channels_and_sizes():
    a = load_pretrain_set('phantom', 28, **PH); b = load_pretrain_set('phantom@64', 28, **PH)
    rgb = PretrainSet('rgb', type(a.info)(**{**vars(a.info), 'n_channels': 3}), np.repeat(a.images, 3, -1), np.repeat(a.probe, 3, -1),
                      dict(mean=[.5]*3, std=[.25]*3), 'made', 'x')
    md = MultiDataset([a, b, rgb], 'proportional', seed=0)
    model = MultiDatasetModel(build_image_encoder('small-cnn', in_chans=1), {n: s.info for n, s in md.sets.items()}, ['rotation', 'masked-image'], size=28)
    batch = md.batch(24)
    assert {tuple(v['image'].shape[1:]) for v in batch.values()} <= {(1, 28, 28), (1, 64, 64), (3, 28, 28)}
    outs = model(batch)
    for n, o in outs.items(): assert o['masked-image']['rec'].shape == batch[n]['image'].shape   # per-dataset heads: own channels and size
    with pytest.raises(MtlsynError, match='self-supervised'): MultiDatasetModel(build_image_encoder('small-cnn'), {'a': a.info}, ['classify'])

def test_bounded_cached_and_saved_with_provenance(tmp_path):
    cfg = PretrainConfig(datasets=['phantom', 'phantom@64'], tasks=['rotation', 'masked-image', 'simclr'], steps=4, bs=8, probe=8)
    p, prov, hit = cached_pretrain(cfg, tmp_path)
    assert not hit and p.suffix == '.safetensors'
    assert cached_pretrain(cfg, tmp_path)[2]                                   # found by its content hash
    other = PretrainConfig(**{**vars(cfg), 'steps': 5})
    sets = [load_pretrain_set(n, 28) for n in cfg.datasets]
    assert pretrain_key(other, sets) != pretrain_key(cfg, sets)
    prov = read_encoder_provenance(p)
    assert prov['datasets'] == ['phantom', 'phantom@64'] and prov['steps'] == 4 and prov['tasks'] == cfg.tasks
    assert set(prov['split_sha256']) == {'phantom', 'phantom@64'} and prov['cost_pretrain_flops'] > 0
    assert sum(prov['samples'].values()) == 4*8                                 # exactly `steps` batches
    enc = build_image_encoder('small-cnn', in_chans=1)
    assert load_encoder_weights(enc, p)['provenance']['key'] == prov['key']
    bad = tmp_path/'enc.pt'; bad.write_bytes(b'x')
    with pytest.raises(MtlsynError, match='safetensors'): load_encoder_weights(enc, bad)

def test_study_pretrains_then_second_study_loads(tmp_path):
    from mtlsyn.study.runner import run_study
    base = dict(benchmark='phantom', benchmark_kwargs=PH, size=28, budget=5, text_encoder=None, tasks=['classify'], epochs=1, bs=16,
                pretrain_steps=3, pretrain_bs=8, pretrain_tasks=['rotation', 'masked-image'], threads=1, seeds=[0])
    recs = run_study(dict(base, name='pre', pretrain_on=['target', 'phantom@64']), tmp_path/'a', log=lambda *a: None)
    r = recs[0]
    assert r['status'] == 'ok', r.get('error')
    assert r['cost_pretrain_flops'] > 0 and r['cost_pretrain_seconds'] > 0 and r['mem_pretrain_peak_rss_mb'] > 0
    prov = json.loads(r['image_encoder_provenance'])
    assert prov['datasets'] == ['phantom', 'phantom@64'] and prov['steps'] == 3
    path = Path(os.environ['MTLSYN_CACHE'])/'pretrain'/f"{prov['key']}.safetensors"   # where the study's pre-training cached it
    r2 = run_study(dict(base, name='post', image_encoder_weights=str(path)), tmp_path/'b', log=lambda *a: None)[0]
    assert r2['status'] == 'ok', r2.get('error')
    assert json.loads(r2['image_encoder_provenance'])['key'] == prov['key']    # provenance lands in the second study's records
    assert r2['cost_pretrain_flops'] == 0

def test_config_checks_pretrain_fields():
    from mtlsyn.study.config import load_study
    with pytest.raises(MtlsynError, match='pretrain_on: unknown benchmark'): load_study(dict(pretrain_on=['nosuch']))
    with pytest.raises(MtlsynError, match='pretrain_tasks'): load_study(dict(pretrain_on=['phantom'], pretrain_tasks=['classify']))
    with pytest.raises(MtlsynError, match='pretrain_sampling'): load_study(dict(pretrain_sampling='sqrt'))
