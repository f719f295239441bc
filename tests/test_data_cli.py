"The `mtlsyn-data` command: JSON summaries, the done-when checks on PneumoniaMNIST, offline phantoms, one-line errors"
import json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from medmnist import INFO

EXE = str(Path(sys.executable).parent/'mtlsyn-data')
PINNED = 'b031c1ab00032734f24daa6be1bad212677c7c17c80a70da1f57712c20fc6791'   # pneumoniamnist 28 px, 1%, seed 0
KEYS = {'dataset', 'size', 'task', 'n_classes', 'n_labeled', 'n_unlabeled', 'n_val', 'n_test', 'labeled_per_class', 'split_sha256'}

def cli(*args, env=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})

def ok_json(r):
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)                      # exactly one JSON object: anything else fails to parse
    assert isinstance(out, dict) and KEYS <= set(out)
    return out

def one_line_error(r, *parts):
    assert r.returncode != 0 and r.stdout == ''
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'Traceback' not in r.stderr, r.stderr
    for p in parts: assert p in lines[0]

def test_pneumoniamnist_done_when(medmnist_root):
    env = dict(MEDMNIST_ROOT=str(medmnist_root))
    a = ok_json(cli('pneumoniamnist', '--budget', '0.01', '--seed', '0', '--json', env=env))
    assert a['labeled_per_class'] == [12, 35] and a['task'] == 'binary-class' and a['n_classes'] == 2
    assert (a['n_labeled'] + a['n_unlabeled'], a['n_val'], a['n_test']) == (4708, 524, 624)
    assert a['split_sha256'] == PINNED
    assert ok_json(cli('pneumoniamnist', '--budget', '0.01', '--seed', '0', '--json', env=env))['split_sha256'] == PINNED
    assert ok_json(cli('pneumoniamnist', '--budget', '0.01', '--seed', '1', '--json', env=env))['split_sha256'] != PINNED
    assert ok_json(cli('pneumoniamnist', '--budget', '10', '--json', env=env))['labeled_per_class'] == [10, 10]

def test_text_summary(medmnist_root):
    r = cli('pneumoniamnist', '--budget', '10', '--root', medmnist_root)
    assert r.returncode == 0 and 'labeled: 20 [10, 10]' in r.stdout and 'split_sha256:' in r.stdout and 'verified' in r.stdout

def test_md5_mismatch_fails_cleanly(tmp_path, medmnist_root):
    dst = tmp_path/'pneumoniamnist.npz'; shutil.copy(medmnist_root/'pneumoniamnist.npz', dst)
    b = bytearray(dst.read_bytes()); b[1000] ^= 1; dst.write_bytes(bytes(b))
    one_line_error(cli('pneumoniamnist', '--root', tmp_path, '--json'), 'MD5 mismatch', INFO['pneumoniamnist']['MD5'], str(dst))
    assert [p.name for p in tmp_path.iterdir()] == ['pneumoniamnist.npz']

def test_truncated_and_missing_key_fail_cleanly_with_no_verify(tmp_path, medmnist_root):
    t = tmp_path/'t'; t.mkdir(); b = (medmnist_root/'pneumoniamnist.npz').read_bytes()
    (t/'pneumoniamnist.npz').write_bytes(b[:len(b)//3])
    one_line_error(cli('pneumoniamnist', '--root', t, '--no-verify'), 'not a readable npz', 'pneumoniamnist.npz')
    k = tmp_path/'k'; k.mkdir()
    d = dict(np.load(medmnist_root/'pneumoniamnist.npz')); d.pop('val_images'); np.savez(k/'pneumoniamnist.npz', **d)
    one_line_error(cli('pneumoniamnist', '--root', k, '--no-verify', '--json'), 'missing the key(s) val_images')
    assert [p.name for p in t.iterdir()] == [p.name for p in k.iterdir()] == ['pneumoniamnist.npz']

def test_phantom_offline_without_medmnist(tmp_path):
    empty = tmp_path/'no_medmnist'; empty.mkdir()
    out = ok_json(cli('phantom', '--size', '64', '--budget', '20', '--json', env=dict(MEDMNIST_ROOT=str(empty))))
    assert out['dataset'] == 'phantom' and out['size'] == 64 and out['labeled_per_class'] == [20]*4
    assert (out['n_labeled'], out['n_unlabeled'], out['n_val'], out['n_test']) == (80, 1920, 400, 800)
    assert list(empty.iterdir()) == []

def test_bad_input_is_one_line(tmp_path):
    one_line_error(cli('nosuchmnist'), 'unknown benchmark')
    one_line_error(cli('pneumoniamnist', '--root', tmp_path), 'not found', INFO['pneumoniamnist']['url'], '--download')
    one_line_error(cli('phantom', '--budget', 'lots'), 'budget')
    one_line_error(cli('phantom', '--budget', '0.0001'), 'too small')
