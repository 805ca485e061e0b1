#!/usr/bin/env python3
"""Runs W1 and W2 for dm2s2 and PyTorch, interleaved, and prints medians, ratios and peak memory.

Called by benchmarks/compare.sh after it has built the benchmark; see benchmarks/README.md. Every
measurement runs in its own process, so its peak resident memory is that workload's alone. Rounds
alternate the two sides so that a slow spell of a shared machine falls on both.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(cmd, env=None):
    """Runs cmd; returns (stdout, the process's peak resident memory in MiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"compare: {' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.read().decode()}")
        return out.read().decode(), usage.ru_maxrss / 1024


def ours(bench, name, threads, repeats, extra_args=""):
    """Real times (ms) of one benchmark instance, one iteration per repetition."""
    pattern = f"^{name}/threads:{threads}{extra_args}/real_time$"
    out, rss = run([bench, f"--benchmark_filter={pattern}", "--benchmark_min_time=0",
                    f"--benchmark_repetitions={repeats}", "--benchmark_format=json"])
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
    if not runs:
        sys.exit(f"compare: no benchmark matched {pattern}")
    scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}
    return [b["real_time"] * scale[b["time_unit"]] for b in runs], rss


def torch_side(shapes, workload, threads, repeats, env, *extra):
    out, rss = run(["/usr/bin/python3", str(HERE / "torch_workloads.py"), "--shapes", shapes, "--workload", workload,
                    "--threads", str(threads), "--repeats", str(repeats), *map(str, extra)], env)
    return json.loads(out)["times_ms"], rss


def secondary_tables(bench, products, shapes, threads, repeats, env):
    """The products, W3 and W4, one process per case, as markdown tables (not part of the three-line
    contract)."""
    def row(label, ours_ms, torch_ms, unit_scale=None):
        a, b = statistics.median(ours_ms), statistics.median(torch_ms)
        extra = f" | {unit_scale / a * 1e3:.1f} | {unit_scale / b * 1e3:.1f}" if unit_scale else ""
        print(f"| {label} | {a:.1f} | {b:.1f} | {b / a:.2f}{extra} |", flush=True)

    for th in sorted({1, threads}):
        print(f"\nThe encoder's matrix products at W1's 485 rows, {th} thread(s), against OpenBLAS in the same process\n")
        print(run([products, "--threads", str(th)], env)[0].split("\n\n", 1)[1].rstrip(), flush=True)
    print(f"\nW3: 4 layers, hidden 256, 4 heads, batch 64, {threads} threads\n")
    print("| case | dm2s2 ms | PyTorch ms | speedup | dm2s2 samples/s | PyTorch samples/s |\n| --- | --- | --- | --- | --- | --- |")
    row("inference fp32", ours(bench, "W3_inference", threads, repeats, "/bf16:0")[0],
        torch_side(shapes, "w3-infer", threads, repeats, env)[0], 64)
    row("training step fp32", ours(bench, "W3_train_step", threads, repeats)[0],
        torch_side(shapes, "w3-train", threads, repeats, env)[0], 64)
    print(f"\nW4: BERT-base latency, {threads} threads (PyTorch: the better of nested tensors and padding)\n")
    print("| batch | dm2s2 ms | PyTorch ms | speedup | dm2s2 ms, plain weights |\n| --- | --- | --- | --- | --- |")
    for batch in (1, 2, 4, 8, 16, 32, 64):
        a = statistics.median(ours(bench, "W4_batch", threads, repeats, f"/batch:{batch}/packed_weights:1")[0])
        b = statistics.median(torch_side(shapes, "w4-batch", threads, repeats, env, "--batch", batch)[0])
        plain = statistics.median(ours(bench, "W4_batch", threads, repeats, f"/batch:{batch}/packed_weights:0")[0])
        print(f"| {batch} | {a:.1f} | {b:.1f} | {b / a:.2f} | {plain:.1f} |", flush=True)
    print("\n| packed length (batch 1) | dm2s2 ms | PyTorch ms | speedup |\n| --- | --- | --- | --- |")
    for length in (32, 64, 128, 256, 512):
        row(str(length), ours(bench, "W4_length", threads, repeats, f"/length:{length}")[0],
            torch_side(shapes, "w4-length", threads, repeats, env, "--length", length)[0])


def openblas_environment():
    """PyTorch's fp32 products in training go to OpenBLAS. OpenBLAS 0.3.21 does not know some recent
    processors and falls back to its generic Prescott kernels, five times slower than its AVX-512 ones;
    it is pointed at the right kernels so that PyTorch is measured at its best."""
    env = dict(os.environ)
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
    except OSError:
        return env, "OpenBLAS not found"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "OPENBLAS_CORETYPE" not in env and core.lower() == "prescott" and " avx512f" in flags:
        env["OPENBLAS_CORETYPE"] = "Cooperlake" if " avx512_bf16" in flags else "SkylakeX"
        return env, f"OpenBLAS detected {core}; set OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}"
    return env, f"OpenBLAS core {env.get('OPENBLAS_CORETYPE', core)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench", required=True, help="the dm2s2_bench_workloads program")
    parser.add_argument("--products", help="the dm2s2_bench_products program (needed by --full)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per process")
    parser.add_argument("--full", action="store_true", help="also run the products, W3 and W4 and print their tables first")
    args = parser.parse_args()
    t = args.threads

    env, blas_note = openblas_environment()
    env["OMP_NUM_THREADS"] = str(t)
    shapes = os.path.join(tempfile.mkdtemp(prefix="dm2s2-compare-"), "shapes.json")
    run([args.bench, f"--w1_lengths={shapes}"])
    with open(shapes) as f:
        lengths = json.load(f)["lengths"]
    print(f"machine: {os.cpu_count()} cores; {t} threads on both sides; {blas_note}")
    print(f"W1 batch: packed lengths {lengths} ({sum(lengths)} tokens, padded to {max(lengths)})")

    if args.full:
        if not args.products:
            sys.exit("compare: --full needs --products")
        secondary_tables(args.bench, args.products, shapes, t, 3, env)
        print()

    cases = {
        "W1 dm2s2 fp32": lambda: ours(args.bench, "W1_inference", t, args.repeats, "/bf16:0/padding_free:1/packed_weights:1"),
        "W1 dm2s2 fp32 plain weights": lambda: ours(args.bench, "W1_inference", t, args.repeats,
                                                    "/bf16:0/padding_free:1/packed_weights:0"),
        "W1 dm2s2 fp32 padded": lambda: ours(args.bench, "W1_inference", t, args.repeats, "/bf16:0/padding_free:0/packed_weights:1"),
        "W1 dm2s2 bf16": lambda: ours(args.bench, "W1_inference", t, args.repeats, "/bf16:1/padding_free:1/packed_weights:1"),
        "W1 dm2s2 bf16 plain weights": lambda: ours(args.bench, "W1_inference", t, args.repeats,
                                                    "/bf16:1/padding_free:1/packed_weights:0"),
        "W1 PyTorch padded": lambda: torch_side(shapes, "w1-padded", t, args.repeats, env),
        "W1 PyTorch nested": lambda: torch_side(shapes, "w1-nested", t, args.repeats, env),
        "W2 dm2s2 fp32": lambda: ours(args.bench, "W2_train_step", t, max(3, args.repeats - 2)),
        "W2 PyTorch fp32": lambda: torch_side(shapes, "w2", t, max(3, args.repeats - 2), env),
    }
    times = {name: [] for name in cases}
    rss = {name: 0.0 for name in cases}
    for r in range(args.rounds):
        for name, measure in cases.items():
            ts, peak = measure()
            times[name] += ts
            rss[name] = max(rss[name], peak)
            print(f"  round {r + 1}: {name}: median {statistics.median(ts):.1f} ms", flush=True)

    median = {name: statistics.median(ts) for name, ts in times.items()}
    print("\n| case | median ms | runs | peak RSS MiB |\n| --- | --- | --- | --- |")
    for name in cases:
        print(f"| {name} | {median[name]:.1f} | {len(times[name])} | {rss[name]:.0f} |")
    torch_w1 = min(median["W1 PyTorch padded"], median["W1 PyTorch nested"])
    print(f"\nW1 padded vs padding-free (dm2s2): {median['W1 dm2s2 fp32 padded'] / median['W1 dm2s2 fp32']:.2f}x")
    print(f"W1 fp32 speedup vs PyTorch: {torch_w1 / median['W1 dm2s2 fp32']:.2f}")
    print(f"W2 fp32 speedup vs PyTorch: {median['W2 PyTorch fp32'] / median['W2 dm2s2 fp32']:.2f}")
    print(f"W1 bf16 speedup vs PyTorch fp32: {torch_w1 / median['W1 dm2s2 bf16']:.2f}")


if __name__ == "__main__":
    main()
