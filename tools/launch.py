#!/usr/bin/env python
"""Launch a distributed MXNet job on the parameter server (ps-lite), locally or over ssh.

Usage::

    python tools/launch.py -n WORKERS [-s SERVERS] [--hostfile hosts] [--log-dir DIR] \\
        python train.py --kvstore dist_sync ...

Starts one scheduler, ``SERVERS`` servers and ``WORKERS`` workers, each running the same
command with the ps-lite environment::

    DMLC_ROLE            scheduler | server | worker
    DMLC_PS_ROOT_URI     scheduler address (127.0.0.1 locally, --root-uri or this host's
                         address with --hostfile)
    DMLC_PS_ROOT_PORT    a free port (or --port)
    DMLC_NUM_WORKER      WORKERS
    DMLC_NUM_SERVER      SERVERS

MXNet turns a process whose role is server or scheduler into that role when it imports
``mxnet`` (it never returns to the script); workers run the script and get their rank
from the kvstore (``kv.rank``).

Without ``--hostfile`` every process runs on this machine (loopback). With
``--hostfile`` (one host name or address per line, ``#`` comments allowed) the scheduler
runs here and servers and workers are spread round-robin over the hosts with
``ssh HOST 'cd CWD && env ... COMMAND'``: the command, the project and its data must be
at the same path on every host, and ssh must log in without a password.

The launcher waits for every worker. When all succeed it gives the servers and the
scheduler ``--grace`` seconds to finish, then terminates them; when a worker (or a
server/scheduler, before the workers are done) fails, it kills every other process and
exits with the failing process's status. Ctrl-C / SIGTERM kill everything too.
"""
import argparse
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rcnn.utils import cli  # noqa: E402

logger = logging.getLogger('launch')

# environment variables forwarded to ssh-launched processes (local ones inherit everything)
FORWARDED_ENV_PREFIXES = ('MXNET_', 'OMP_', 'PS_', 'DMLC_INTERFACE')
FORWARDED_ENV_NAMES = ('PYTHONPATH', 'CUDA_VISIBLE_DEVICES', 'LD_LIBRARY_PATH', 'RETINAFACE_SHARED')


def free_port(host='127.0.0.1'):
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def read_hostfile(path):
    """Host names of a host file: one per line, blank lines and ``#`` comments skipped."""
    hosts = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            text = line.split('#', 1)[0].strip()
            if not text:
                continue
            if len(text.split()) != 1:
                raise ValueError('%s:%d: expected one host per line, got %r' % (path, line_no, text))
            hosts.append(text)
    if not hosts:
        raise ValueError('%s: no host listed' % path)
    return hosts


def local_address_towards(host):
    """This machine's address on the route to ``host`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, 9))
            return sock.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def dmlc_env(role, root_uri, root_port, num_workers, num_servers, node_host=None):
    """The ps-lite variables of one process."""
    env = {'DMLC_ROLE': role, 'DMLC_PS_ROOT_URI': root_uri, 'DMLC_PS_ROOT_PORT': str(root_port),
           'DMLC_NUM_WORKER': str(num_workers), 'DMLC_NUM_SERVER': str(num_servers)}
    if node_host:
        env['DMLC_NODE_HOST'] = node_host
    return env


def forwarded_env():
    """Variables of this environment worth passing to remote processes."""
    return {k: v for k, v in os.environ.items()
            if k in FORWARDED_ENV_NAMES or k.startswith(FORWARDED_ENV_PREFIXES)}


def ssh_command(ssh, host, workdir, env, command):
    """argv running ``command`` on ``host`` in ``workdir`` with ``env`` through ``ssh``."""
    exports = ' '.join('%s=%s' % (k, shlex.quote(v)) for k, v in sorted(env.items()))
    remote = 'cd %s && env %s %s' % (shlex.quote(workdir), exports,
                                     ' '.join(shlex.quote(a) for a in command))
    return shlex.split(ssh) + [host, remote]


def plan(num_workers, num_servers, command, hosts=None, root_uri=None, port=None,
         ssh='ssh -o StrictHostKeyChecking=no -o BatchMode=yes', workdir=None):
    """List the processes to start: dicts with role, index, host, argv, env.

    Locally (``hosts`` None) each argv is ``command`` and env adds the DMLC variables;
    with hosts, servers and workers go round-robin over them through ``ssh``.
    """
    if num_workers < 1 or num_servers < 1:
        raise ValueError('need at least one worker and one server (got -n %d -s %d)'
                         % (num_workers, num_servers))
    if not command:
        raise ValueError('no command to launch (e.g. python train.py --kvstore dist_sync ...)')
    if root_uri is None:
        root_uri = '127.0.0.1' if not hosts else local_address_towards(hosts[0])
    if port is None:
        port = free_port('127.0.0.1' if not hosts else '')
    workdir = workdir or os.getcwd()
    procs = [{'role': 'scheduler', 'index': 0, 'host': None, 'argv': list(command),
              'env': dmlc_env('scheduler', root_uri, port, num_workers, num_servers)}]
    slot = 0
    for role, count in (('server', num_servers), ('worker', num_workers)):
        for index in range(count):
            env = dmlc_env(role, root_uri, port, num_workers, num_servers)
            if hosts:
                host = hosts[slot % len(hosts)]
                slot += 1
                env['DMLC_NODE_HOST'] = host
                remote_env = dict(forwarded_env(), **env)
                procs.append({'role': role, 'index': index, 'host': host, 'env': {},
                              'argv': ssh_command(ssh, host, workdir, remote_env, command)})
            else:
                procs.append({'role': role, 'index': index, 'host': None, 'argv': list(command),
                              'env': env})
    return procs


class Job(object):
    """The started processes; kills them all on failure or exit."""

    def __init__(self, procs, log_dir=None):
        self.procs = procs
        self.log_dir = log_dir
        self.running = []  # (spec, Popen, log file or None)

    def start(self):
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
        for spec in self.procs:
            env = dict(os.environ, **spec['env'])
            log = None
            if self.log_dir:
                log = open(os.path.join(self.log_dir, '%s%d.log' % (spec['role'], spec['index'])),
                           'wb')
            popen = subprocess.Popen(spec['argv'], env=env, stdout=log, stderr=log,
                                     start_new_session=True)
            logger.info('started %s %d (pid %d)%s', spec['role'], spec['index'], popen.pid,
                        ' on ' + spec['host'] if spec['host'] else '')
            self.running.append((spec, popen, log))
            if spec['role'] == 'scheduler':
                time.sleep(0.2)  # let the scheduler bind its port first

    def _kill(self, popen, sig):
        try:
            os.killpg(popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self, grace=5.0):
        """SIGTERM every live process group, SIGKILL what is left after ``grace`` s."""
        alive = [(s, p) for s, p, _ in self.running if p.poll() is None]
        for _, popen in alive:
            self._kill(popen, signal.SIGTERM)
        deadline = time.time() + grace
        for _, popen in alive:
            try:
                popen.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                self._kill(popen, signal.SIGKILL)
                popen.wait()
        for _, _, log in self.running:
            if log:
                log.close()

    def wait(self, grace=30.0, poll=0.2):
        """Wait for the workers; returns the job's exit status (0 when every worker succeeded)."""
        workers = [(s, p) for s, p, _ in self.running if s['role'] == 'worker']
        others = [(s, p) for s, p, _ in self.running if s['role'] != 'worker']
        while True:
            for spec, popen in workers + others:
                code = popen.poll()
                if code is None or code == 0:
                    continue
                if spec['role'] != 'worker' and all(p.poll() == 0 for _, p in workers):
                    continue
                logger.error('%s %d exited with status %d; stopping the job', spec['role'],
                             spec['index'], code)
                self.stop_all()
                return code if code > 0 else 128 - code
            if all(p.poll() == 0 for _, p in workers):
                break
            time.sleep(poll)
        deadline = time.time() + grace
        while time.time() < deadline and any(p.poll() is None for _, p in others):
            time.sleep(poll)
        lingering = [s['role'] for s, p in others if p.poll() is None]
        if lingering:
            logger.info('workers done; terminating %s', ', '.join(sorted(set(lingering))))
        self.stop_all()
        logger.info('all %d workers finished successfully', len(workers))
        return 0


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-n', '--num-workers', type=int, required=True,
                        help='number of worker processes (each trains on its roidb shard)')
    parser.add_argument('-s', '--num-servers', type=int, default=None,
                        help='number of parameter-server processes (default: as many as workers)')
    parser.add_argument('-H', '--hostfile', default=None,
                        help='file listing the hosts (one per line) to ssh into; default: all '
                             'processes on this machine over loopback')
    parser.add_argument('--root-uri', default=None,
                        help='scheduler address the others connect to (default 127.0.0.1, or '
                             'this machine\'s address towards the first host with --hostfile)')
    parser.add_argument('--port', type=int, default=None,
                        help='scheduler port (default: a free port picked now)')
    parser.add_argument('--ssh', default='ssh -o StrictHostKeyChecking=no -o BatchMode=yes',
                        help='ssh command used with --hostfile (default: %(default)s)')
    parser.add_argument('--workdir', default=None,
                        help='folder the command runs in on remote hosts (default: this one)')
    parser.add_argument('--log-dir', default=None,
                        help='write each process\'s output to DIR/<role><index>.log instead of '
                             'this terminal')
    parser.add_argument('--grace', type=float, default=30.0,
                        help='seconds the servers/scheduler get to exit after the workers '
                             '(default %(default)s)')
    parser.add_argument('command', nargs=argparse.REMAINDER,
                        help='the command every process runs, e.g. python train.py ...')
    args = parser.parse_args(argv)
    if args.num_servers is None:
        args.num_servers = args.num_workers
    if args.command and args.command[0] == '--':
        args.command = args.command[1:]
    return args


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='[launch] %(message)s')
    args = parse_args(argv)
    try:
        hosts = read_hostfile(args.hostfile) if args.hostfile else None
        procs = plan(args.num_workers, args.num_servers, args.command, hosts=hosts,
                     root_uri=args.root_uri, port=args.port, ssh=args.ssh, workdir=args.workdir)
    except (OSError, ValueError) as exc:
        logger.error('%s', exc)
        return 2
    job = Job(procs, log_dir=args.log_dir)

    def on_signal(signum, _frame):
        logger.error('signal %d: stopping every process', signum)
        job.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    logger.info('scheduler %s:%s, %d server(s), %d worker(s)%s',
                procs[0]['env']['DMLC_PS_ROOT_URI'], procs[0]['env']['DMLC_PS_ROOT_PORT'],
                args.num_servers, args.num_workers,
                ' on %s' % ', '.join(hosts) if hosts else ' on this machine')
    job.start()
    return job.wait(grace=args.grace)


if __name__ == '__main__':
    sys.exit(main())
