"""tools/launch.py: roles and DMLC environment, failure propagation, ssh command lines.

The 2-worker dist_sync training run lives in tests/core/test_train.py (slow).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'tools' / 'launch.py'

# a stand-in for `python train.py`: records its environment, then behaves by role
ROLE_SCRIPT = r'''
import json, os, sys, time
out = sys.argv[1]
role = os.environ['DMLC_ROLE']
keys = ['DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_WORKER',
        'DMLC_NUM_SERVER', 'DMLC_NODE_HOST', 'MARK']
with open(os.path.join(out, '%s-%d.json' % (role, os.getpid())), 'w') as f:
    json.dump({k: os.environ.get(k) for k in keys}, f)
if role == 'worker':
    time.sleep(0.3)
    sys.exit(int(os.environ.get('WORKER_EXIT', '0')))
time.sleep(float(os.environ.get('SERVER_SLEEP', '600')))   # servers wait to be stopped
'''


def run_launch(tmp_path, extra_env=None, args=(), timeout=60):
    script = tmp_path / 'role.py'
    script.write_text(ROLE_SCRIPT)
    out = tmp_path / 'out'
    out.mkdir(exist_ok=True)
    env = dict(os.environ, **(extra_env or {}))
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(LAUNCH), *args, sys.executable, str(script),
                           str(out)], env=env, capture_output=True, text=True, timeout=timeout)
    records = [json.loads(p.read_text()) for p in sorted(out.glob('*.json'))]
    return proc, records, time.time() - t0


def test_local_job_gets_roles_and_dmlc_environment(tmp_path):
    proc, records, elapsed = run_launch(tmp_path, {'MARK': 'inherited'},
                                        ['-n', '2', '-s', '1', '--grace', '0.5'])
    assert proc.returncode == 0, proc.stderr
    roles = sorted(r['DMLC_ROLE'] for r in records)
    assert roles == ['scheduler', 'server', 'worker', 'worker']
    ports = {r['DMLC_PS_ROOT_PORT'] for r in records}
    assert len(ports) == 1 and 1024 < int(ports.pop()) < 65536
    for r in records:
        assert r['DMLC_PS_ROOT_URI'] == '127.0.0.1'
        assert (r['DMLC_NUM_WORKER'], r['DMLC_NUM_SERVER']) == ('2', '1')
        assert r['MARK'] == 'inherited'
    # the servers (sleeping 600 s) were terminated after the grace period
    assert elapsed < 30


def test_failing_worker_fails_the_job_and_stops_everything(tmp_path):
    proc, records, elapsed = run_launch(tmp_path, {'WORKER_EXIT': '3'}, ['-n', '2', '-s', '2'])
    assert proc.returncode == 3
    assert 'worker' in proc.stderr and 'status 3' in proc.stderr
    assert elapsed < 30            # servers did not keep the launcher waiting


def test_server_dying_early_fails_the_job(tmp_path):
    # servers exit with status 1 before the workers are done (workers sleep 0.3 s)
    script_env = {'SERVER_SLEEP': 'x'}   # float('x') raises -> status 1
    proc, _, _ = run_launch(tmp_path, script_env, ['-n', '1', '-s', '1'])
    assert proc.returncode == 1


def test_no_command_is_an_error(tmp_path):
    proc = subprocess.run([sys.executable, str(LAUNCH), '-n', '1'], capture_output=True, text=True)
    assert proc.returncode == 2 and 'no command' in proc.stderr


def test_hostfile_spreads_servers_and_workers_over_ssh(tmp_path):
    """A fake ssh runs the remote command locally; it records the host it was asked for."""
    fake_ssh = tmp_path / 'fake_ssh'
    fake_ssh.write_text('#!/bin/sh\nhost="$1"; shift\necho "$host" >> "%s"\nexec sh -c "$1"\n'
                        % (tmp_path / 'hosts_used'))
    fake_ssh.chmod(0o755)
    hostfile = tmp_path / 'hosts'
    hostfile.write_text('# cluster\nnode-a\n\nnode-b  # second\n')
    proc, records, _ = run_launch(
        tmp_path, {'OMP_NUM_THREADS': '1'},
        ['-n', '2', '-s', '1', '--hostfile', str(hostfile), '--ssh', str(fake_ssh),
         '--root-uri', '127.0.0.1', '--grace', '0.5'])
    assert proc.returncode == 0, proc.stderr
    # server -> node-a, worker 0 -> node-b, worker 1 -> node-a (round-robin)
    assert sorted((tmp_path / 'hosts_used').read_text().split()) == ['node-a', 'node-a', 'node-b']
    remote = [r for r in records if r['DMLC_ROLE'] != 'scheduler']
    assert sorted(r['DMLC_NODE_HOST'] for r in remote) == ['node-a', 'node-a', 'node-b']
    scheduler = [r for r in records if r['DMLC_ROLE'] == 'scheduler']
    assert len(scheduler) == 1 and scheduler[0]['DMLC_NODE_HOST'] is None


def test_bad_hostfile_line_names_file_and_line(tmp_path):
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        import launch
    finally:
        sys.path.pop(0)
    hostfile = tmp_path / 'hosts'
    hostfile.write_text('node-a\nnode-b extra\n')
    with pytest.raises(ValueError, match=r'hosts:2'):
        launch.read_hostfile(str(hostfile))
