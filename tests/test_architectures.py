"Interacted and hybrid sharing families (issue 12): gradient flow per task, parameter counts against hand counts, fine-tuning strategies, UMS-Rep encoder files"
from types import SimpleNamespace
import pytest, torch
from mtlsyn.core import MtlsynError
from mtlsyn.model.encoders import build_image_encoder, save_encoder, load_encoder_weights, read_encoder_provenance, apply_finetune
from mtlsyn.model.vlm import build_vlm, sharings
import mtlsyn.model.all  # noqa: F401  (the interacted and hybrid sharing families register themselves)

INFO = SimpleNamespace(name='toy', task='multi-class', classes=['a', 'b', 'c'], n_channels=1, modality='x-ray',
                       mask_names=['lung', 'lesion'], multi_label=False)
TASKS = ('classify', 'segment', 'reconstruct')
CH = [8, 8, 16, 32]   # the small CNN's block channels at width 8

def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    return dict(image=torch.randn(n, 1, 28, 28, generator=g), label=torch.tensor([0, 1, 2, 0][:n]),
                mask=(torch.rand(n, 2, 28, 28, generator=g) > .5).float())

def _model(sharing, tasks=TASKS, **kw):
    torch.manual_seed(0)
    return build_vlm('small-cnn', None, tasks, info=INFO, sharing=sharing, width=8, **kw)

def _n(m): return sum(p.numel() for p in m.parameters())

def _grads(model, task):
    "Names of the parameters that receive a non-zero gradient from `task`'s loss alone"
    model.zero_grad(set_to_none=True)
    b = _batch(); out = model(b)
    model.tasks[task].loss(out[task], b).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}

def _under(model, prefix): return {n for n, p in model.named_parameters() if n.startswith(prefix)}

@pytest.mark.parametrize('sharing', ['parallel', 'cascaded', 'cross-stitch', 'mtan', 'hybrid'])
def test_every_parameter_gets_gradient_from_the_tasks(sharing):
    m = _model(sharing)
    reached = set().union(*(_grads(m, t) for t in TASKS))
    assert reached == {n for n, p in m.named_parameters() if p.requires_grad}, sorted(set(dict(m.named_parameters())) - reached)
    for t in TASKS:   # each task trains its own head and never another's
        g = _grads(m, t)
        assert _under(m, f'tasks.{t}.') <= g
        assert not any(n.startswith('tasks.') and not n.startswith(f'tasks.{t}.') for n in g)

def test_cross_stitch_columns_mix_through_the_units_only():
    m = _model('cross-stitch')
    g = _grads(m, 'segment')
    assert _under(m, 'sharing.columns.segment.') <= g and _under(m, 'image_encoder.') <= g   # the classify column, via the units
    with torch.no_grad():
        for a in m.sharing.units: a.copy_(torch.eye(3)[:, :, None].expand_as(a))   # identity units: separate networks
    g = _grads(m, 'segment')
    assert _under(m, 'sharing.columns.segment.') <= g
    assert not g & (_under(m, 'image_encoder.') | _under(m, 'sharing.columns.reconstruct.'))

def test_mtan_trains_the_trunk_and_only_its_own_attention():
    m = _model('mtan')
    for t in TASKS:
        g = _grads(m, t)
        assert _under(m, 'image_encoder.') <= g and _under(m, f'sharing.att.{t}.') <= g
        assert not any(n.startswith('sharing.att.') and not n.startswith(f'sharing.att.{t}.') for n in g)

def test_hybrid_stitches_the_segmentation_branch_with_classification():
    m = _model('hybrid')
    assert m.sharing.seg == 'segment' and len(m.sharing.branch) == 1
    assert _under(m, 'sharing.branch.') <= _grads(m, 'classify')   # classification reads the segmentation branch via the unit
    assert _under(m, 'image_encoder.net.3.') <= _grads(m, 'segment')
    with pytest.raises(MtlsynError, match='segment'): _model('hybrid', tasks=('classify', 'reconstruct'))
    with pytest.raises(MtlsynError, match='chained blocks'):
        build_vlm('vit-tiny', None, ('classify', 'segment'), info=INFO, sharing='cross-stitch')

def test_parameter_counts_match_hand_counts():
    par = _model('parallel'); enc = _n(par.image_encoder)
    assert enc == 9*1*8+2*8 + 9*8*8+2*8 + 9*8*16+2*16 + 9*16*32+2*32
    T = len(TASKS)
    assert _n(_model('cross-stitch')) - _n(par) == (T-1)*enc + T*T*sum(CH)
    att = sum((c + (CH[i-1] if i else 0))*c + c*c + 4*c for i, c in enumerate(CH))
    assert _n(_model('mtan')) - _n(par) == T*att
    adapters = (3*32 + 32) + (2*32 + 32)        # classify (3 logits) -> next, segment (2 masks) -> next
    assert _n(_model('cascaded')) - _n(par) == adapters
    assert _n(_model('hybrid')) - _n(par) == (9*16*32 + 2*32) + 2*2*32 + adapters

def test_finetune_frozen_and_partial_freeze_the_encoder_and_its_statistics():
    for sharing in ('parallel', 'cross-stitch'):
        m = _model(sharing, finetune='frozen').train()
        stats = [b.clone() for b in m.image_encoder.buffers()]
        g = _grads(m, 'classify')
        assert not g & _under(m, 'image_encoder.') and not any('columns' in n for n in g)
        assert all(torch.equal(a, b) for a, b in zip(stats, m.image_encoder.buffers()))   # batch norm stays in eval mode
    m = _model('parallel', finetune='partial:2')
    assert _grads(m, 'classify') & _under(m, 'image_encoder.') == _under(m, 'image_encoder.net.2.') | _under(m, 'image_encoder.net.3.')
    with pytest.raises(MtlsynError, match='has 4 blocks'): _model('parallel', finetune='partial:5')
    with pytest.raises(MtlsynError, match='partial:<k>'): apply_finetune(build_image_encoder('small-cnn'), 'last2')

def test_encoder_files_are_safetensors_with_provenance(tmp_path):
    m = _model('parallel')
    f = save_encoder(m, tmp_path/'enc.safetensors', dict(method='denoise', epochs=2))
    assert read_encoder_provenance(f) == dict(method='denoise', epochs=2)
    m2 = _model('cross-stitch', image_encoder_weights=str(f))
    for a, b in zip(m.image_encoder.state_dict().values(), m2.sharing.columns['segment'].state_dict().values()):
        assert torch.equal(a, b)   # every column starts from the loaded representation
    assert m2.encoder_weights['provenance']['method'] == 'denoise' and len(m2.encoder_weights['sha256']) == 64
    (tmp_path/'enc.pt').write_bytes(b'x')
    for bad, msg in [('enc.pt', 'safetensors'), ('missing.safetensors', 'does not exist')]:
        with pytest.raises(MtlsynError, match=msg): load_encoder_weights(build_image_encoder('small-cnn', width=8), tmp_path/bad)
    with pytest.raises(MtlsynError, match='holds a small-cnn'): load_encoder_weights(build_image_encoder('vit-tiny'), f)
    with pytest.raises(MtlsynError, match='JSON'): save_encoder(m, tmp_path/'x.safetensors', dict(f=object()))

def test_study_fields_select_families_and_finetuning_and_records_carry_them(tmp_path):
    from mtlsyn.study.config import load_study, study_runs
    from mtlsyn.study.runner import _flat_cfg
    assert {'parallel', 'cascaded', 'cross-stitch', 'mtan', 'hybrid'} <= set(sharings.names())
    base = study_runs(load_study(dict(tasks=['classify'])))[0]
    same = study_runs(load_study(dict(tasks=['classify'], finetune='full', image_encoder_weights=None)))[0]
    assert base.run_id == same.run_id   # the defaults keep existing run ids
    r = _flat_cfg(base); assert r['cfg_finetune'] == 'full' and r['cfg_sharing'] == 'parallel'
    assert load_study(dict(sharing='cross-stitch', finetune='partial:2')).finetune == 'partial:2'
    for bad, msg in [(dict(finetune='half'), 'finetune must be'), (dict(image_encoder_weights='enc.pt'), 'safetensors'),
                     (dict(sharing='stitch'), 'unknown sharing')]:
        with pytest.raises(MtlsynError, match=msg): load_study(bad)
