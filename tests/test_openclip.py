"open_clip checkpoints as image and text encoders: loading by folder and by hub id (only the download mocked), no pickle, caching, a study"
import json
import pytest
import torch, torch.nn.functional as F

open_clip = pytest.importorskip('open_clip')
import mtlsyn.model.all  # noqa: F401,E402
from mtlsyn.core import MtlsynError  # noqa: E402
from mtlsyn.model import openclip as oc  # noqa: E402
from mtlsyn.model.encoders import build_image_encoder, build_text_encoder  # noqa: E402
from mtlsyn.model.vlm import build_vlm  # noqa: E402

HUB_ID = 'microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224'

@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    "A small open_clip checkpoint in the hub layout, saved once for this module"
    return oc.tiny_openclip(tmp_path_factory.mktemp('openclip')/'tiny-clip')

@pytest.fixture(autouse=True)
def _fresh_cache():
    oc.load_openclip.cache_clear(); yield; oc.load_openclip.cache_clear()

def test_folder_layout_and_weights(ckpt):
    cfg, w = oc.openclip_files(str(ckpt))
    assert (cfg.name, w.name) == ('open_clip_config.json', 'open_clip_model.safetensors')
    assert set(json.loads(cfg.read_text())) == {'model_cfg', 'preprocess_cfg'}
    ck = oc.load_openclip(str(ckpt))
    from safetensors.torch import load_file
    saved = load_file(str(w))
    assert all(torch.equal(v, saved[k]) for k, v in ck.model.state_dict().items())
    assert not any(p.requires_grad for p in ck.model.parameters()) and not ck.model.training

def test_bin_loads_with_weights_only_and_pickles_are_refused(ckpt, tmp_path):
    d = tmp_path/'bin-clip'; d.mkdir()
    (d/'open_clip_config.json').write_text((ckpt/'open_clip_config.json').read_text())
    sd = oc.load_openclip(str(ckpt)).model.state_dict()
    torch.save(sd, d/'open_clip_pytorch_model.bin')
    assert oc.openclip_files(str(d))[1].name == 'open_clip_pytorch_model.bin'
    assert torch.equal(oc.load_openclip(str(d)).model.text_projection, sd['text_projection'])
    class Evil:
        def __reduce__(self): return (exec, ("raise SystemExit('pickled code ran')",))
    torch.save({'x': Evil()}, d/'open_clip_pytorch_model.bin')
    oc.load_openclip.cache_clear()
    with pytest.raises(MtlsynError, match='pickled objects'): oc.load_openclip(str(d))

def test_bad_specs(ckpt, tmp_path):
    with pytest.raises(MtlsynError, match='not a folder'): build_image_encoder(f'openclip:{tmp_path}/missing')
    with pytest.raises(MtlsynError, match='open_clip_config.json'): build_text_encoder(f'openclip:{tmp_path}')
    with pytest.raises(MtlsynError, match='needs a checkpoint'): build_text_encoder('openclip')
    with pytest.raises(MtlsynError, match='1 \\(grey'): build_image_encoder(f'openclip:{ckpt}', in_chans=4)
    with pytest.raises(MtlsynError, match='choose frozen'): build_text_encoder(f'openclip:{ckpt}', mode='lora')

def test_hub_id_mocks_only_the_download(ckpt, monkeypatch):
    "`openclip:hf-hub:<id>` goes through open_clip's own hub download; only huggingface_hub's hf_hub_download is replaced"
    calls = []
    def fake_download(repo_id, filename, revision=None, cache_dir=None, **kw):
        calls.append((repo_id, filename))
        if not (ckpt/filename).is_file(): raise FileNotFoundError(filename)   # as the hub answers for a missing file
        return str(ckpt/filename)
    import open_clip.pretrained
    monkeypatch.setattr(open_clip.pretrained, 'hf_hub_download', fake_download)
    enc = build_image_encoder(f'openclip:hf-hub:{HUB_ID}', in_chans=1)
    te = build_text_encoder(f'openclip:hf-hub:{HUB_ID}')
    assert {f for _, f in calls} >= {'open_clip_config.json', 'open_clip_model.safetensors'}
    assert {r for r, _ in calls} == {HUB_ID}
    ref = oc.load_openclip(str(ckpt)).model
    assert torch.equal(enc.visual.conv1.weight, ref.visual.conv1.weight)
    torch.testing.assert_close(te.encode(['a chest x-ray']), ref.encode_text(open_clip.get_tokenizer(f'local-dir:{ckpt}')(['a chest x-ray'])))

def test_hub_unreachable_is_one_line(monkeypatch):
    import open_clip.pretrained
    oc.load_openclip.cache_clear()   # a checkpoint loaded earlier in this process (a docs page, another test) would answer from memory
    def offline(*a, **k): raise OSError('no network')
    monkeypatch.setattr(open_clip.pretrained, 'hf_hub_download', offline)
    with pytest.raises(MtlsynError, match='reach the Hugging Face hub'): build_text_encoder(f'openclip:hf-hub:{HUB_ID}')

def test_image_preprocessing_follows_the_checkpoint(ckpt):
    stats = dict(mean=[0.3], std=[0.25])
    enc = build_image_encoder(f'openclip:{ckpt}', in_chans=1, input_stats=stats).eval()
    x01 = torch.rand(3, 1, 28, 28)
    ref = F.interpolate(x01.expand(-1, 3, -1, -1), size=(32, 32), mode='bicubic', antialias=True)
    ref = (ref - torch.tensor(oc._CLIP_MEAN).view(1, -1, 1, 1))/torch.tensor(oc._CLIP_STD).view(1, -1, 1, 1)
    o = enc((x01 - 0.3)/0.25)
    torch.testing.assert_close(o['feat'], enc.visual(ref), atol=1e-5, rtol=1e-4)
    assert o['fmap'].shape == (3, enc.fmap_dim, 4, 4) and enc.out_dim == 32
    assert all(p.requires_grad for p in enc.parameters())
    plain = build_image_encoder(f'openclip:{ckpt}', in_chans=3).eval()     # no stats: the loader's standardisation stands
    assert plain(torch.randn(2, 3, 64, 64))['feat'].shape == (2, 32)

def test_text_modes_and_cache(ckpt):
    te = build_text_encoder(f'openclip:{ckpt}')
    e1 = te.encode(['no finding', 'an effusion', 'no finding'])
    assert e1.shape == (3, 32) and len(te.cache) == 2 and len(te.state_dict()) == 0
    c = te.one_off_cost; te.encode(['an effusion']); assert te.one_off_cost == c and c['flops'] > 0
    ft = build_text_encoder(f'openclip:{ckpt}', mode='finetune')
    assert not any(k.startswith('hf.visual') for k in ft.state_dict()) and ft.one_off_cost == dict(seconds=0., flops=0.)
    ft.encode(['an effusion']).sum().backward()
    assert ft.hf.transformer.resblocks[0].mlp.c_fc.weight.grad is not None
    assert oc.load_openclip(oc._norm_spec(str(ckpt))).model.transformer.resblocks[0].mlp.c_fc.weight.grad is None  # the cached original untouched
    pt = build_text_encoder(f'openclip:{ckpt}', mode='partial', n_unfrozen=1)
    trained = {k for k, p in pt.named_parameters() if p.requires_grad}
    assert trained and all(k.startswith(('hf.transformer.resblocks.1.', 'hf.ln_final', 'hf.text_projection')) for k in trained)

def test_vlm_forward_and_backward(ckpt):
    from types import SimpleNamespace
    info = SimpleNamespace(name='toy', classes=['a', 'b'], n_classes=2, task='multi-class', n_channels=1, modality='x-ray',
                           mask_names=[], multi_label=False)
    m = build_vlm(f'openclip:{ckpt}', f'openclip:{ckpt}', tasks=['classify', 'contrastive'], info=info)
    b = dict(image=torch.randn(4, 1, 28, 28), label=torch.tensor([0, 1, 0, 1]), target=F.one_hot(torch.tensor([0, 1, 0, 1]), 2).float(),
             text=['a', 'b', 'a', 'b'])
    out = m(b)
    assert set(out) == {'classify', 'contrastive'}

def test_two_run_study_and_text_tower_grid(ckpt, tmp_path):
    from mtlsyn.study import load_study, study_runs, run_study
    spec = f'openclip:{ckpt}'
    grid = study_runs(load_study(dict(name='towers', budget=8, grid=dict(text_encoder=['minilm', 'learned', spec]))))
    assert [r.text_encoder for r in grid] == ['minilm', 'learned', spec]
    with pytest.raises(MtlsynError, match='unknown text encoder'): load_study(dict(text_encoder=f'openclipx:{ckpt}'))
    recs = run_study(dict(name='openclip-tiny', benchmark='phantom', budget=8, benchmark_kwargs=dict(n_train=64, n_val=32, n_test=32),
                          image_encoder=spec, text_encoder=spec, tasks=['classify', 'contrastive'], epochs=1, bs=16, seeds=[0],
                          grid=dict(text_mode=['frozen', 'finetune'])), tmp_path/'study', log=lambda *a: None)
    assert sorted(r['status'] for r in recs) == ['ok', 'ok'], [r.get('error') for r in recs]
    assert {r['cfg_text_mode'] for r in recs} == {'frozen', 'finetune'}
    assert all(r['cfg_image_encoder'] == spec for r in recs)
