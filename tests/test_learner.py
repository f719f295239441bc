"mtl_learner end to end: phantoms with four tasks, per-task metrics, model selection on val, bf16, schedules, errors"
import math
import numpy as np, pytest, torch
from fastai.torch_core import set_seed
from mtlsyn.core import MtlsynError
from mtlsyn.learner import mtl_learner, fit_pretrain_finetune
from mtlsyn.test_utils import toy_dls
from mtlsyn.model.vlm import build_vlm

torch.set_num_threads(1)

@pytest.fixture(scope='module')
def phantom_dls():
    from mtlsyn.data.all import load_benchmark
    from mtlsyn.data.loaders import dataloaders
    split = load_benchmark('phantom', n_train=96, n_val=48, n_test=48)
    return dataloaders(split, bs=32, device='cpu')

TASKS = ('classify','contrastive','reconstruct','segment')

def test_four_task_phantom_run_records_every_task_metric(phantom_dls):
    set_seed(0)
    model = build_vlm('small-cnn', 'minilm', TASKS, info=phantom_dls.info)
    learn = mtl_learner(phantom_dls, model, 'equal', lr=3e-3)
    with learn.no_bar(), learn.no_logging(): learn.fit(3)
    names = list(learn.recorder.metric_names)
    per_task = [f'{t}_{m}' for t in TASKS for m in model.tasks[t].metric_names]
    assert names[3:-1] == per_task and 'classify_bacc' in per_task and 'segment_dice' in per_task
    vals = np.array([[float(x) for x in v] for v in learn.recorder.values])
    assert np.isfinite(vals).all() and vals[-1, 0] < vals[0, 0]          # train loss falls
    assert learn.recorder.values[-1][names.index('reconstruct_mse')-1] < learn.recorder.values[0][names.index('reconstruct_mse')-1]
    assert set(learn.task_losses) == set(TASKS) and set(learn.task_weights) == set(TASKS)
    assert len(learn.mtl.history) == 3*len(phantom_dls.train)               # weights logged every step
    test = learn.evaluate(phantom_dls.test)
    assert set(test) == set(per_task) | {'loss'}
    assert 0 <= test['segment_dice'] <= 1 and 0 <= test['contrastive_r1'] <= 1

def test_the_best_val_epoch_is_restored(phantom_dls):
    set_seed(1)
    model = build_vlm('small-cnn', None, ('classify',), info=phantom_dls.info)
    learn = mtl_learner(phantom_dls, model, lr=1e-2)
    with learn.no_bar(), learn.no_logging(): learn.fit(4)
    aucs = [float(v[2]) for v in learn.recorder.values]
    assert learn.best_epoch == int(np.argmax(aucs)) and learn.best_value == pytest.approx(max(aucs))
    assert learn.evaluate()['classify_auc'] == pytest.approx(max(aucs), abs=1e-6)   # the weights now in the model are the best epoch's
    assert learn.monitor == 'classify_auc'

def test_bf16_autocast_trains_dict_outputs_like_fp32():
    res = {}
    for prec in ('fp32', 'bf16'):
        set_seed(0); dls = toy_dls(n_train=64, n_valid=32)
        learn = mtl_learner(dls, build_vlm('small-cnn', None, ('classify','segment'), info=dls.info), lr=3e-3, precision=prec, monitor='valid_loss')
        with learn.no_bar(), learn.no_logging(): learn.fit(4)
        res[prec] = learn.evaluate()
    assert res['bf16']['classify_auc'] > 0.9 and res['bf16']['segment_dice'] > 0.8
    assert abs(res['bf16']['segment_dice'] - res['fp32']['segment_dice']) < 0.1

def test_early_stopping_on_val_and_lower_is_better_monitors():
    set_seed(0); dls = toy_dls(n_train=32, n_valid=16)
    learn = mtl_learner(dls, build_vlm('small-cnn', None, ('reconstruct',), info=dls.info), lr=0., patience=1)
    with learn.no_bar(), learn.no_logging(): learn.fit(10)
    assert len(learn.recorder.values) == 2                    # lr 0: no improvement after the first epoch, stop after patience 1
    assert learn.monitor == 'reconstruct_mse'

def test_synthetic_pretrain_then_real_finetune():
    set_seed(0); real, syn = toy_dls(n_train=32, n_valid=32, seed=0), toy_dls(n_train=64, n_valid=16, seed=9)
    learn = mtl_learner(real, build_vlm('small-cnn', None, ('classify',), info=real.info), lr=3e-3, monitor='valid_loss')
    with learn.no_bar(), learn.no_logging(): fit_pretrain_finetune(learn, syn, 2, 3)
    assert [len(v) for v in learn.stage_values.values()] == [2, 3]
    fine = [float(v[1]) for v in learn.stage_values['finetune']]     # valid_loss on the real val set, fine-tuning only
    assert learn.dls is real and learn.best_epoch == int(np.argmin(fine)) and learn.best_value == pytest.approx(min(fine))
    assert learn.evaluate()['loss'] == pytest.approx(min(fine), rel=1e-5)   # the best fine-tuning epoch's weights are restored

def test_learner_user_errors():
    dls = toy_dls(n_train=16, n_valid=16)
    m = build_vlm('small-cnn', None, ('classify',), info=dls.info)
    with pytest.raises(MtlsynError, match='precision'): mtl_learner(dls, m, precision='fp8')
    with pytest.raises(MtlsynError, match='choose one of'): mtl_learner(dls, m, 'uncertainity')
    with pytest.raises(MtlsynError, match='adam, adamw, sgd'): mtl_learner(dls, m, opt='adamm')
    with pytest.raises(MtlsynError, match='no metric'): mtl_learner(dls, m, monitor='classify_dice')

@pytest.mark.skipif(torch.cuda.is_available(), reason='fp16 runs on a GPU: the error is for CPU-only machines')
def test_fp16_on_cpu_fails_before_training():
    dls = toy_dls(n_train=16, n_valid=16)
    learn = mtl_learner(dls, build_vlm('small-cnn', None, ('classify',), info=dls.info), precision='fp16')
    with pytest.raises(MtlsynError, match='GPU'):
        with learn.no_bar(), learn.no_logging(): learn.fit(1)

def test_gradient_level_weighting_on_the_four_task_phantom_model(phantom_dls):
    set_seed(0)
    learn = mtl_learner(phantom_dls, build_vlm('small-cnn', 'minilm', TASKS, info=phantom_dls.info), 'upgrad', lr=3e-3, precision='bf16')
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    w = learn.task_weights
    assert set(w) == set(TASKS) and all(math.isfinite(v) and v >= 0 for v in w.values())
    assert all(math.isfinite(float(v[0])) for v in learn.recorder.values)

def test_consistency_draws_from_the_unlabeled_loader():
    set_seed(0); dls, unl = toy_dls(n_train=32, n_valid=16), toy_dls(n_train=48, n_valid=16, seed=3).train
    passes = []
    class Counting:                                                    # counts the passes the task starts over `unl`
        def __iter__(self): passes.append(1); return iter(unl)
    model = build_vlm('small-cnn', None, ('classify', 'consistency'), info=dls.info)
    model.tasks['consistency'].set_unlabeled(Counting())
    learn = mtl_learner(dls, model, lr=3e-3)
    with learn.no_bar(), learn.no_logging(): learn.fit(2)
    assert len(passes) >= 1                                            # the unlabeled loader was iterated
    assert 'consistency_agree' in learn.recorder.metric_names and 0 <= learn.evaluate()['consistency_agree'] <= 1
