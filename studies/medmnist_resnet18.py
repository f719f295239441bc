"""MedMNIST v2's ResNet-18 (28) recipe on PneumoniaMNIST through `mtl_learner` as a single-task model.

Recipe: full train split at 28 px, Adam lr 1e-3, batch 128, no augmentation, model selected by val AUC;
either early stopping on val AUC (`--schedule early`, default) or the paper's 100 epochs with lr x0.1 at 50 and 75
(`--schedule multistep`). Reports test AUC/ACC of the selected epoch, the epochs run, the precision and wall time.

    MEDMNIST_ROOT=/work/shared/data/medmnist python studies/medmnist_resnet18.py --precision bf16 --out results/pneumonia_r18.json
"""
import argparse, json, os, sys, time
import torch
from fastai.callback.core import Callback
from mtlsyn.core import set_seed, env_info, atomic_write
from mtlsyn.data.medmnist import load_benchmark
from mtlsyn.data.loaders import dataloaders
from mtlsyn.model.vlm import build_vlm
from mtlsyn.learner import mtl_learner

class MultiStepLR(Callback):
    "Multiply the learning rate by `gamma` at each epoch in `milestones` (MedMNIST's 0.1 at 50 and 75)"
    def __init__(self, lr, milestones=(50, 75), gamma=0.1): self.lr, self.milestones, self.gamma = lr, milestones, gamma
    def before_epoch(self):
        self.opt.set_hyper('lr', self.lr * self.gamma ** sum(self.epoch >= m for m in self.milestones))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--dataset', default='pneumoniamnist'); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--epochs', type=int, default=100); p.add_argument('--patience', type=int, default=10)
    p.add_argument('--schedule', choices=['early', 'multistep'], default='early')
    p.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'], default='bf16')
    p.add_argument('--bs', type=int, default=128); p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: leave the default)')
    p.add_argument('--out', default=None, help='write the result JSON here')
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    set_seed(a.seed)
    split = load_benchmark(a.dataset, size=28, budget='all', seed=a.seed)
    dls = dataloaders(split, bs=a.bs, seed=a.seed)
    model = build_vlm('resnet18-28', None, ('classify',), info=split.info)
    cbs = [MultiStepLR(a.lr)] if a.schedule == 'multistep' else []
    learn = mtl_learner(dls, model, 'equal', lr=a.lr, opt='adam', precision=a.precision, cbs=cbs,
                        patience=a.patience if a.schedule == 'early' else None)
    t = time.time()
    learn.fit(a.epochs, a.lr)
    wall = time.time() - t
    test = learn.evaluate(dls.test)
    res = dict(dataset=a.dataset, model='resnet18-28', seed=a.seed, schedule=a.schedule, precision=a.precision,
               epochs_run=len(learn.recorder.values), best_epoch=learn.best_epoch, val_auc=learn.best_value,
               test_auc=test['classify_auc'], test_acc=test['classify_acc'], wall_s=round(wall, 1), **env_info())
    print(json.dumps(res, indent=1))
    if a.out: atomic_write(a.out, json.dumps(res, indent=1))
    return res

if __name__ == '__main__': main()
