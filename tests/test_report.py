"The report from a study folder: shared target with censoring, paired statistics, Δm%, sections and figures"
import json, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, yaml
from scipy import stats
import matplotlib; matplotlib.use('Agg')
from mtlsyn.core import MtlsynError
from mtlsyn import report
from mtlsyn.test_utils import fake_study

BIN = Path(sys.executable).parent

@pytest.fixture(scope='module')
def fake(tmp_path_factory):
    return fake_study(tmp_path_factory.mktemp('fake')/'study', shards=2)

def _hand_study(d:Path, runs:list, targets=None)->Path:
    "A study folder written by hand: `runs` is a list of (setting, seed, status, [val AUC per eval]); eval k is at k×1e9 FLOPs"
    d.mkdir(parents=True)
    (d/'study.yaml').write_text(yaml.safe_dump(dict(name='hand', target_frac=0.9, **({'targets': targets} if targets else {}))))
    with open(d/'results.jsonl', 'w') as f:
        for i, (s, seed, status, vals) in enumerate(runs):
            rid = f'r{i}'
            f.write(json.dumps(dict(run_id=rid, status=status, seed=seed, cfg_setting=s, cfg_tasks='classify', val_classify_auc=max(vals))) + '\n')
            ev = [dict(epoch=k+1., step=10*(k+1), samples=100*(k+1), flops=1e9*(k+1), seconds=0.5*(k+1), val_classify_auc=v) for k,v in enumerate(vals)]
            (d/'runs'/rid).mkdir(parents=True); (d/'runs'/rid/'curves.json').write_text(json.dumps(dict(names=[], values=[], evals=ev)))
    return d

def test_report_has_the_sections_and_at_least_five_figures(fake):
    p = report.write_report(fake)
    assert p == fake/'report'/'report.md'
    md = p.read_text()
    for h in ('## Convergence to a shared target', '## Paired comparisons', '## Memory', '## Accuracy'):
        assert f'\n{h}\n' in md, h
    pngs = list(p.parent.glob('*.png'))
    assert len(pngs) >= 5 and all(x.stat().st_size > 5000 for x in pngs)
    for s in ('```yaml', 'Selection rule', 'Target:', 'reached', 'p_holm', 'delta_m_pct', 'test bACC', 'test ECE', 'fixed: frozen weights', 'S1'):
        assert s in md, s
    assert len(pd.read_csv(p.parent/'results.csv')) == 20

def test_shards_are_merged(fake):
    assert sorted(x.name for x in fake.glob('results*.jsonl')) == ['results-0of2.jsonl', 'results-1of2.jsonl']
    df = report.results_frame(fake)
    assert len(df) == 20 and df.run_id.is_unique and set(df.seed) == set(range(5))

def test_reached_k_of_n_with_censoring_and_diverged_never_converged(tmp_path):
    d = _hand_study(tmp_path/'s', [('base', 0, 'ok', [0.6, 0.7, 0.8]),       # reaches 0.75 at the 3rd eval: 3e9 FLOPs
                                   ('base', 1, 'ok', [0.6, 0.7, 0.72]),      # never: censored at 3e9
                                   ('base', 2, 'diverged', [0.9, 0.95]),     # crosses the target, but diverged
                                   ('base', 3, 'ok', [0.76, 0.8])],          # reaches at the 1st eval: 1e9
                    targets={'classify_auc': 0.75})
    t = report.shared_target(d)
    assert (t.value, t.higher) == (0.75, True) and 'absolute' in t.rule
    conv = report.convergence_frame(d, t).set_index('seed')
    assert conv.reached.tolist() == [True, False, False, True]
    assert conv.flops.tolist() == [3e9, 3e9, 1e9, 1e9] and conv.epoch.tolist() == [3., 3., 1., 1.]
    ct = report.convergence_table(conv.reset_index(), {'base': 'S1'})
    assert ct.reached[0] == '2 of 4' and '(diverged)' in ct['not converged'][0]
    # Kaplan–Meier by hand: times 1e9 (event, diverged censored), 3e9 (event, censored): S = 1 at 1e9 → 3/4 ... median never below 1/2?
    # at 1e9: 4 at risk, 1 event → S = 3/4; at 3e9: 2 at risk, 1 event → S = 3/8 < 1/2: median 3e9
    assert ct['median FLOPs'][0] == 3e9
    md = report.write_report(d).read_text()
    assert '2 of 4' in md and 'diverged' in md.split('## Convergence to a shared target')[1].split('## Paired')[0]

def test_default_target_is_frac_of_the_baseline_mean_best(tmp_path):
    d = _hand_study(tmp_path/'s', [('tasks=classify', 0, 'ok', [0.6, 0.8]), ('tasks=classify', 1, 'ok', [0.7, 0.6]),
                                   ('tasks=classify+contrastive', 0, 'ok', [0.9, 0.9]), ('tasks=classify+contrastive', 1, 'ok', [0.9, 0.95])])
    assert report.shared_target(d).value == pytest.approx(0.9*0.75)
    assert report.shared_target(d, baseline='contrastive').value == pytest.approx(0.9*0.925)

def test_baseline_by_unique_part_and_the_ambiguous_error(fake):
    sets = report.settings_of(report.load_results(fake))
    assert report.find_setting(sets, 'contrastive, generator=mixup') == 'tasks=classify+contrastive, generator=mixup, ratio=1'
    with pytest.raises(MtlsynError, match='is ambiguous'): report.find_setting(sets, 'mixup')
    with pytest.raises(MtlsynError, match='names no setting'): report.find_setting(sets, 'nope')
    assert report.shared_target(fake, baseline='contrastive, generator=none').baseline == sets[2]
    r = subprocess.run([str(BIN/'mtlsyn-report'), str(fake), '--baseline', 'mixup'], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'is ambiguous' in r.stderr and 'Traceback' not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

def test_paired_tests_and_holm_by_hand():
    diffs = {'a': [0.01, 0.02, 0.03], 'b': [0.05, -0.01, 0.02], 'c': [0.10, 0.12, 0.11]}
    base = [0.80, 0.70, 0.75]
    rows = [dict(status='ok', seed=s, cfg_setting='base', x=v) for s,v in enumerate(base)]
    rows += [dict(status='ok', seed=s, cfg_setting=k, x=base[s]+d[s]) for k,d in diffs.items() for s in range(3)]
    pt = report.paired_tests(pd.DataFrame(rows), 'x', 'base').set_index('setting')
    # a: mean 0.02, sd 0.01, t = 0.02/(0.01/√3) = 2√3, two-sided p on 2 df; d_z = 2
    assert pt.loc['a', 'p_t'] == pytest.approx(2*stats.t.sf(2*np.sqrt(3), 2), rel=1e-6)
    assert pt.loc['a', 'dz'] == pytest.approx(2.0, rel=1e-6) and pt.loc['a', 'n'] == 3
    p = pt.p_t.to_numpy(); o = np.argsort(p); holm = np.empty(3); run = 0
    for i, j in enumerate(o): run = max(run, min(1, (3-i)*p[j])); holm[j] = run
    assert pt.p_holm.to_numpy() == pytest.approx(holm)
    assert (pt.warning == 'n < 5: low power').all()
    assert np.isfinite(pt.loc['b', 'mde']) and pt.loc['b', 'mde'] > pt.loc['a', 'mde']

def test_delta_m_by_hand():
    rows = [dict(status='ok', seed=0, cfg_setting='cls', cfg_tasks='classify', test_classify_auc=0.80, test_classify_acc=0.70),
            dict(status='ok', seed=0, cfg_setting='rec', cfg_tasks='reconstruct', test_reconstruct_mse=0.10),
            dict(status='ok', seed=0, cfg_setting='mtl', cfg_tasks='classify+reconstruct', test_classify_auc=0.84,
                 test_classify_acc=0.6825, test_reconstruct_mse=0.09)]
    dm = report.delta_m(pd.DataFrame(rows)).set_index('setting')
    # classify: (+5% − 2.5%)/2 = +1.25%; reconstruct (lower is better): −(0.09 − 0.10)/0.10 = +10%; mean: 5.625%
    assert dm.loc['mtl', 'delta_m_pct'] == pytest.approx(5.625)
    assert dm.loc['mtl', 'tasks'] == 'classify, reconstruct'

def test_anova_needs_a_balanced_grid(fake):
    df, cfg = report.results_frame(fake), report.study_config(fake)
    av = report.anova_grid(df, 'test_classify_auc', cfg)
    assert list(av.index) == ['tasks', 'generator_ratio', 'tasks:generator_ratio'] and (av['Den DF'] == 3).all()  # the diverged seed is left out
    assert report.anova_grid(df[df.seed == 0], 'test_classify_auc', cfg) is None

def test_accuracy_flags_and_unreliable_seconds(fake):
    df = report.results_frame(fake)
    assert report.below_majority(df).sum() == (df.test_classify_acc < df.test_classify_majority_rate).sum() > 0
    assert report.seconds_unreliable(dict(env_load_start=3.5, env_load_end=1, env_cores=2))
    assert not report.seconds_unreliable(dict(env_load_start=1.5, env_load_end=1.9, env_cores=2))
    assert 'class names only' in report.captions_note(df)
