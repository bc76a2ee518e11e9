"""Do the sensors slow the model down? decode tok/s with sensors at 100 Hz vs sensors off.

Arms, measured side by side in one run (each a fresh ``meltbench.run`` worker, same
model, threads and workload; interleaved, order rotated each round so drift hits every
arm alike):

- ``off``: no energy/temperature/frequency sensors (``sensors=()``), RSS sampled at 1 Hz
  (the lowest rate; the kernel's VmHWM still gives the exact peak).
- ``live@100Hz``: every sensor available on this machine at 100 Hz, and RSS at 100 Hz.
- ``tree@100Hz``: the same, reading a synthetic sysfs tree (2 RAPL packages + dram, 8
  thermal zones, 8 cpufreq policies, a battery: 20 files per reading, about what a
  laptop or a Jetson exposes), so the cost of reading a realistic set of sensors is
  measured even on a machine with none (a VM: then ``live`` only samples RSS).

Printed: median decode and prefill tok/s per arm, the sampler's achieved rate, and the
ratios ``arm / off`` (SPEC target for decode: >= 0.99).

Usage: ``python benchmarks/perturbation.py [--n-prompt 64 --n-gen 128 --reps 5 --rounds 3]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def synthetic_tree(root: Path) -> Path:
    """A sysfs tree shaped like a small laptop's: RAPL, thermal zones, cpufreq, battery."""

    def put(rel: str, value: object) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")

    for pkg in range(2):
        zone = f"sys/class/powercap/intel-rapl:{pkg}"
        put(f"{zone}/name", f"package-{pkg}")
        put(f"{zone}/energy_uj", 123456789 + pkg)
        put(f"{zone}/max_energy_range_uj", 262143328850)
        put(f"{zone}/enabled", 1)
    put("sys/class/powercap/intel-rapl:0/intel-rapl:0:0/name", "dram")
    put("sys/class/powercap/intel-rapl:0/intel-rapl:0:0/energy_uj", 5550000)
    put("sys/class/powercap/intel-rapl:0/intel-rapl:0:0/max_energy_range_uj", 262143328850)
    for z in range(8):
        put(f"sys/class/thermal/thermal_zone{z}/type", f"cpu{z}-thermal")
        put(f"sys/class/thermal/thermal_zone{z}/temp", 45000 + 500 * z)
        put(f"sys/class/thermal/thermal_zone{z}/mode", "enabled")
    for cpu in range(8):
        pol = f"sys/devices/system/cpu/cpufreq/policy{cpu}"
        put(f"{pol}/related_cpus", cpu)
        put(f"{pol}/affected_cpus", cpu)
        put(f"{pol}/scaling_cur_freq", 2400000)
        put(f"{pol}/scaling_min_freq", 800000)
        put(f"{pol}/scaling_max_freq", 3600000)
        put(f"{pol}/cpuinfo_max_freq", 3600000)
        put(f"{pol}/scaling_governor", "performance")
        put(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", 2400000)
    bat = "sys/class/power_supply/BAT0"
    put(f"{bat}/type", "Battery")
    put(f"{bat}/status", "Discharging")
    put(f"{bat}/capacity", 80)
    put(f"{bat}/current_now", 1500000)
    put(f"{bat}/voltage_now", 11400000)
    put(f"{bat}/present", 1)
    return root


def arm(args: argparse.Namespace, threads: int, **sensor_options: object) -> dict:
    import meltbench

    result = meltbench.run(
        n_prompt=args.n_prompt,
        n_gen=args.n_gen,
        reps=args.reps,
        warmup=args.warmup,
        seed=args.seed,
        threads=threads,
        idle_s=0,
        **sensor_options,
    )
    if not result.ok:
        raise SystemExit(f"meltbench run failed: {result.failure}")
    return {
        "decode_tps": list(result.metrics["decode_tps"].samples),
        "prefill_tps": list(result.metrics["prefill_tps"].samples),
        "sensor_hz": result.sensors.get("achieved_hz"),
        "channels": len((result.sensors.get("series") or {}).get("channels") or []),
        "memory_hz": result.memory.get("achieved_hz"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompt", type=int, default=64)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--hz", type=float, default=100.0)
    args = parser.parse_args()

    from meltbench.environment import physical_cores

    threads = args.threads or physical_cores()
    tree = synthetic_tree(Path(tempfile.mkdtemp(prefix="meltbench-sysfs-")))
    arms = {
        "off": lambda: arm(args, threads, sensors=(), memory_hz=1.0),
        f"live@{args.hz:g}Hz": lambda: arm(args, threads, sensor_hz=args.hz, memory_hz=args.hz),
        f"tree@{args.hz:g}Hz": lambda: arm(
            args, threads, sensor_hz=args.hz, memory_hz=args.hz, sysfs_root=str(tree)
        ),
    }
    samples = {a: {"decode_tps": [], "prefill_tps": []} for a in arms}
    info: dict[str, dict] = {}
    names = list(arms)
    t0 = time.time()
    for rnd in range(args.rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            got = arms[name]()
            for metric in ("decode_tps", "prefill_tps"):
                samples[name][metric] += got[metric]
            info[name] = got
        print(f"round {rnd + 1}/{args.rounds} done ({time.time() - t0:.0f} s)", file=sys.stderr)

    med = {a: {m: statistics.median(v) for m, v in ms.items()} for a, ms in samples.items()}
    print(
        f"model gemma3-270m Q4_K_M, threads {threads}, pp{args.n_prompt}+tg{args.n_gen}, "
        f"{args.rounds} rounds x {args.reps} reps per arm"
    )
    print(f"{'arm':<14}{'decode tok/s':>14}{'prefill tok/s':>15}{'channels':>10}{'sensor Hz':>11}")
    for name, m in med.items():
        hz = info[name]["sensor_hz"]
        print(
            f"{name:<14}{m['decode_tps']:>14.2f}{m['prefill_tps']:>15.2f}"
            f"{info[name]['channels']:>10}{(f'{hz:.1f}' if hz else '-'):>11}"
        )
    for name in names[1:]:
        for metric in ("decode_tps", "prefill_tps"):
            ratio = med[name][metric] / med["off"][metric]
            target = " (target >= 0.99)" if metric == "decode_tps" else ""
            print(f"ratio {name}/off {metric}: {ratio:.4f}{target}")


if __name__ == "__main__":
    main()
