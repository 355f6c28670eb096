"""Where a Redis enqueue or drain spends its time: the server's CPU, per command.

Not a scenario (no peers' table, no rounds): the measurements behind the
issue notes' profiles, kept so that their figures can be measured again.
Each subcommand uses the Redis database of ``--url`` (a scratch one: it
resets the server's command statistics, and deletes the keys it wrote).

    python -m benchmarks.probes.redis_costs enqueue offload --url redis://127.0.0.1:6379/12
    benchmarks/.peers-venv/bin/python -m benchmarks.probes.redis_costs enqueue huey --url ...
    python -m benchmarks.probes.redis_costs lua --url ...
    python -m benchmarks.probes.redis_costs drain --url ... --tasks 20000

``enqueue``: wall time and the client's CPU per one-call enqueue, and the
server's CPU per call (``INFO cpu``) with its commands (``INFO
commandstats``). ``lua``: what one Lua operation costs the server inside a
script (a string made, a number parsed). ``drain``: two ``offload worker``
processes drain a filled queue; the server's and the workers' CPU per job.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

NAMESPACE = "probe"
ROOT = Path(__file__).resolve().parents[2]


def server_cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def print_commands(client: redis.Redis, per: int, unit: str) -> None:
    """The server's commands since the last reset, per ``unit`` (``per`` of them)."""
    for name, stats in sorted(client.info("commandstats").items()):
        if stats["calls"] >= per / 100:
            print(
                f"  {name[len('cmdstat_') :]}: {stats['calls'] / per:.3f} calls/{unit}, "
                f"{stats['usec_per_call']:.1f} µs/call, {stats['usec'] / per:.1f} µs/{unit}"
            )


@contextmanager
def scratch(client: redis.Redis, pattern: str) -> Iterator[None]:
    try:
        yield
    finally:
        for key in client.scan_iter(pattern, count=1000):
            client.delete(key)


def enqueuer(system: str, url: str) -> tuple[Callable[[int], Any], str]:
    """One-call enqueue of a no-op for ``system``; the key pattern it writes."""
    from benchmarks.peers import base

    if system == "offload":
        import offload

        app = offload.App(url, namespace=NAMESPACE, name=NAMESPACE)
        return app.task(name="probe.noop")(base.noop), f"offload:{NAMESPACE}:*"
    from huey import RedisHuey

    huey = RedisHuey(NAMESPACE, url=url)
    return huey.task(name="noop")(base.noop), f"huey.*{NAMESPACE}*"


def probe_enqueue(client: redis.Redis, url: str, system: str, calls: int) -> None:
    call, pattern = enqueuer(system, url)
    with scratch(client, pattern):
        for i in range(300):  # connections made, scripts loaded
            call(i)
        client.config_resetstat()
        before, cpu, started = os.times(), server_cpu(client), time.perf_counter()
        for i in range(calls):
            call(i)
        wall, after = time.perf_counter() - started, os.times()
        server = server_cpu(client) - cpu
        print(
            f"{system}: {wall / calls * 1e6:.1f} µs/call; client CPU user "
            f"{(after.user - before.user) / calls * 1e6:.1f}, sys "
            f"{(after.system - before.system) / calls * 1e6:.1f}; "
            f"server CPU {server / calls * 1e6:.1f} µs/call"
        )
        print_commands(client, calls, "call")


LUA_OPERATIONS = {
    "nothing": "",
    "string.format('%.17g')": "x = string.format('%.17g', 12345.678)",
    "string.format('%d')": "x = string.format('%d', 12345)",
    "tostring(i)": "x = tostring(i)",
    "'abc' .. i .. 'def'": "x = 'abc' .. i .. 'def'",
    "string.sub": "x = string.sub('abcdefghijkl', 3, 8)",
    "tonumber('12345')": "x = tonumber('12345')",
    "tonumber('12345.678')": "x = tonumber('12345.678')",
    "{i, i, i}": "x = {i, i, i}",
    "ARGV[1] == '...'": "x = ARGV[1] == '12345.678'",
}


def probe_lua(client: redis.Redis, calls: int) -> None:
    """Each operation 100 times in a script; its cost is the script's above ``nothing``."""
    base = 0.0
    for name, operation in LUA_OPERATIONS.items():
        sha = client.script_load(f"local x for i = 1, 100 do {operation} end return 1")
        client.config_resetstat()
        for _ in range(calls):
            client.evalsha(sha, 0, "12345.678")
        per_call = float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
        base = base or per_call
        print(f"  {name}: {(per_call - base) * 10:.0f} ns (script {per_call:.1f} µs)")


def worker_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def probe_drain(client: redis.Redis, url: str, tasks: int) -> None:
    """Fill ``tasks`` no-ops, then time 2 workers from the first claim to an empty queue."""
    os.environ.update(BENCH_BACKEND="redis", BENCH_REDIS_URL=url)
    from benchmarks.peers import offload_durable

    ready = "offload:bench:ready:default"
    command = [str(Path(sys.executable).parent / "offload"), "worker"]
    command += ["benchmarks.peers.offload_durable:app", "--pool", "thread", "--concurrency", "8"]
    command += ["--log-level", "WARNING"]  # as the benchmark's drain runs them
    with scratch(client, "offload:bench:*"):
        offload_durable.noop.map(range(tasks))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        workers = [subprocess.Popen(command, env=env, cwd=ROOT) for _ in range(2)]
        try:
            while client.zcard(ready) == tasks:  # until the first claim
                time.sleep(0.002)
            client.config_resetstat()
            cpu, mine = server_cpu(client), [worker_cpu(w.pid) for w in workers]
            started, left = time.perf_counter(), client.zcard(ready)
            while client.zcard(ready):
                time.sleep(0.005)
            wall = time.perf_counter() - started
            server = server_cpu(client) - cpu
            theirs = sum(worker_cpu(w.pid) for w in workers) - sum(mine)
            print(
                f"{left / wall:.0f} jobs/s claimed; per job: server CPU "
                f"{server / left * 1e6:.1f} µs, workers' CPU {theirs / left * 1e6:.1f} µs"
            )
            print_commands(client, left, "job")
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["enqueue", "lua", "drain"])
    parser.add_argument("system", nargs="?", default="offload", choices=["offload", "huey"])
    parser.add_argument("--url", required=True, help="a scratch Redis database")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.url)
    if args.what == "enqueue":
        probe_enqueue(client, args.url, args.system, args.calls)
    elif args.what == "lua":
        probe_lua(client, args.calls // 5)
    else:
        probe_drain(client, args.url, args.tasks)


if __name__ == "__main__":
    main()
