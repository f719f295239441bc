"The mtlsyn-synth CLI end to end: files, the JSON record, tiny budgets, and errors a user reads"
import json, os, subprocess, sys
from pathlib import Path
import pytest

EXE = str(Path(sys.executable).parent/'mtlsyn-synth')

def _run(*args, env=None):
    e = {**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})}
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, env=e, timeout=600)

def test_cli_mixup_phantom_writes_pool_grid_quality(tmp_path):
    out = tmp_path/'mix'
    r = _run('phantom', '--generator', 'mixup', '--n', 40, '--budget', 20, '--max-ref', 100, '--fid-size', 64, '--out', out, '--json')
    assert r.returncode == 0, r.stderr
    q = json.loads(r.stdout)
    assert sorted(p.name for p in out.iterdir()) == ['grid.png', 'pool.json', 'pool.npz', 'quality.json']
    assert q == json.loads((out/'quality.json').read_text())
    for k in ['fid', 'fid_real_floor', 'class_consistency', 'memorised_share', 'seconds']: assert isinstance(q[k], float), k
    assert q['n'] == 40 and q['fid'] > 0 and q['fid_real_floor'] > 0

def test_cli_tiny_diffusion_on_breastmnist_same_seed_same_pool(medmnist_root, tmp_path):
    args = ['breastmnist', '--generator', 'diffusion', '--n', 20, '--budget', 20, '--config', '{"config": "tiny"}', '--fid-size', 64, '--json']
    r1 = _run(*args, '--out', tmp_path/'a', env={'MEDMNIST_ROOT': str(medmnist_root)})
    assert r1.returncode == 0, r1.stderr
    r2 = _run(*args, '--out', tmp_path/'b', '--no-cache', env={'MEDMNIST_ROOT': str(medmnist_root)})
    q1, q2 = json.loads(r1.stdout), json.loads(r2.stdout)
    assert q1['n'] == 20 and q1['pool_sha256'] == q2['pool_sha256']
    assert 0 <= q1['class_consistency'] <= 1 and 0 <= q1['memorised_share'] <= 1

def test_cli_errors_are_one_line(tmp_path):
    r = _run('phantom', '--generator', 'gan', '--n', 10, '--out', tmp_path/'x')
    assert r.returncode == 2 and r.stderr.strip().startswith('error: unknown generator') and 'Traceback' not in r.stderr
    r = _run('phantom', '--generator', 'mixup', '--config', '{not json', '--out', tmp_path/'x')
    assert r.returncode == 2 and 'error: --config is not JSON' in r.stderr
