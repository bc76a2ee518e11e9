"""``meltbench lab``'s parallelism: N devices at once against each device alone.

The reference is what a user without the lab does: one ``meltbench sweep --target local``
per device, one after another (each device's points in its own sweep). The lab arm runs
the same points on all N devices through ``meltbench lab --address`` on a multi-node Ray
cluster started on this machine (``ray.cluster_utils.Cluster``, one node per device). Both
are timed end to end as commands (worker start, model load, measuring, storing).

    ratio = lab wall time / slowest device's serial wall time      (target <= 1.2)

The devices here are this machine, attached N times (``url: local`` on N nodes, each
point with ``threads: 1``), so N <= cores keeps them from sharing a core; on a real lab
they are separate boards and the ratio measures only the scheduler and the driver.

    python benchmarks/lab_parallel.py            # N = 2 (this machine has 2 cores)
    python benchmarks/lab_parallel.py -n 2 --points 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def timed(command: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--devices", type=int, default=2)
    parser.add_argument("--points", type=int, default=3, help="points per device")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="meltbench-lab-bench-"))
    prompts = [64 * (i + 1) for i in range(args.points)]
    exp = {"name": "lab-bench", "n_prompt": prompts, "n_gen": 32, "reps": 3, "threads": 1}
    (tmp / "exp.yaml").write_text(yaml.safe_dump(exp))
    names = [f"box{i}" for i in range(args.devices)]
    lab = {"name": "bench", "devices": {n: {"url": "local", "host": n} for n in names}}
    (tmp / "lab.yaml").write_text(yaml.safe_dump(lab))
    meltbench = [sys.executable, "-m", "meltbench.cli"]

    serial = []
    for i, _ in enumerate(names):
        sweep = [*meltbench, "sweep", str(tmp / "exp.yaml"), "--db", str(tmp / f"s{i}.db"), "-q"]
        serial.append(timed(sweep))
        print(f"serial sweep, device {i + 1}: {serial[-1]:.1f} s", flush=True)

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "resources": {f"device:{names[0]}": 1},
                                      "include_dashboard": False})  # fmt: skip
    for n in names[1:]:
        cluster.add_node(num_cpus=1, resources={f"device:{n}": 1})
    cluster.wait_for_nodes()
    try:
        lab_cmd = [*meltbench, "lab", str(tmp / "lab.yaml"), str(tmp / "exp.yaml"),
                   "--address", cluster.address, "--db", str(tmp / "lab.db"), "-q"]  # fmt: skip
        wall = timed(lab_cmd)
    finally:
        cluster.shutdown()
    print(f"lab, {args.devices} devices in parallel on {args.devices} Ray nodes: {wall:.1f} s")
    slowest = max(serial)
    total = sum(serial)
    print(f"ratio lab wall / slowest device serial = {wall / slowest:.2f} (target <= 1.2); "
          f"all devices serially: {total:.1f} s, speed-up {total / wall:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
