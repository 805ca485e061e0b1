#!/usr/bin/env python3
"""Runs W1 and W2 for dm2s2 and PyTorch, and W1 for ONNX Runtime, interleaved, and prints medians,
ratios, peak memory and the products' share of the processor's register-only peaks.

Called by benchmarks/compare.sh after it has built the benchmark and installed onnxruntime-node; see
benchmarks/README.md. Every measurement runs in its own process, so its peak resident memory is that
workload's alone. Rounds alternate the sides so that a slow spell of a shared machine falls on all.
"""
import argparse
import ctypes
import json
import os
import re
import shutil
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


class OnnxRuntime:
    """The ONNX Runtime side: W1's encoder exported from PyTorch (onnx_export.py), timed by
    onnx_runtime.js with onnxruntime-node from an npm install prefix, on padded batches."""

    def __init__(self, prefix, shapes, hidden):
        self.node = shutil.which("node")
        if self.node is None:
            sys.exit("compare: --onnxruntime needs Node.js (node) on PATH")
        self.prefix, self.hidden = Path(prefix).resolve(), hidden
        if not (self.prefix / "node_modules" / "onnxruntime-node").is_dir():
            sys.exit(f"compare: onnxruntime-node is not installed under {self.prefix} (benchmarks/compare.sh installs it)")
        self.model = self.prefix / "bert_base_encoder.onnx"
        run(["/usr/bin/python3", str(HERE / "onnx_export.py"), "--shapes", shapes, "--output", str(self.model)])

    def __call__(self, lengths, threads, repeats):
        """Times of one process (ms) on the batch of `lengths`, padded to the longest, and its peak RSS."""
        out, rss = run([self.node, str(HERE / "onnx_runtime.js"), "--prefix", str(self.prefix), "--model", str(self.model),
                        "--lengths", ",".join(map(str, lengths)), "--hidden", str(self.hidden), "--threads", str(threads),
                        "--repeats", str(repeats)])
        return json.loads(out)["times_ms"], rss


def register_peaks(products, threads):
    """The register-only peaks (GFLOP/s) of fp32 FMA, vdpbf16ps and AMX tiles on `threads` threads, as
    dm2s2_bench_products measures them (0 where the instruction is missing), the kernels dm2s2's
    bf16 products run on, and the caches and blocking of its fp32 products."""
    out = run([products, "--threads", str(threads), "--peaks-only"])[0]
    found = re.search(r"fp32 FMA ([\d.]+) GFLOP/s, vdpbf16ps ([\d.]+) GFLOP/s, AMX tiles ([\d.]+) GFLOP/s", out)
    if found is None:
        sys.exit(f"compare: no register-only peaks in the output of {products}:\n{out}")
    kernels = re.search(r"bf16 (\S+)", out)
    blocking = re.search(r"dm2s2 blocking: (.*)", out)
    return {"fma": float(found[1]), "dot": float(found[2]), "tiles": float(found[3]),
            "bf16_kernels": kernels[1] if kernels else "unknown", "blocking": blocking[1] if blocking else "unknown"}


def secondary_tables(bench, products, shapes, threads, repeats, env, onnx=None):
    """The products, W3 and W4, one process per case, as markdown tables (not part of the contract
    lines); W4 also against ONNX Runtime where `onnx` is given."""
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
    with open(shapes) as f:
        w4_lengths = json.load(f)["w3_lengths"]

    def against_onnx(ours_ms, lengths):
        """ONNX Runtime's median (padded) and dm2s2's speedup over it, as extra columns."""
        if onnx is None:
            return ""
        b = statistics.median(onnx(lengths, threads, repeats)[0])
        return f" {b:.1f} | {b / ours_ms:.2f} |"

    onnx_head = (" ONNX Runtime ms | speedup vs ONNX Runtime |", " --- | --- |") if onnx else ("", "")
    print(f"\nW4: BERT-base latency, {threads} threads (PyTorch: the better of nested tensors and padding"
          f"{'; ONNX Runtime: padded' if onnx else ''})\n")
    print(f"| batch | dm2s2 ms | PyTorch ms | speedup | dm2s2 ms, plain weights |{onnx_head[0]}\n"
          f"| --- | --- | --- | --- | --- |{onnx_head[1]}")
    for batch in (1, 2, 4, 8, 16, 32, 64):
        a = statistics.median(ours(bench, "W4_batch", threads, repeats, f"/batch:{batch}/packed_weights:1")[0])
        b = statistics.median(torch_side(shapes, "w4-batch", threads, repeats, env, "--batch", batch)[0])
        plain = statistics.median(ours(bench, "W4_batch", threads, repeats, f"/batch:{batch}/packed_weights:0")[0])
        print(f"| {batch} | {a:.1f} | {b:.1f} | {b / a:.2f} | {plain:.1f} |{against_onnx(a, w4_lengths[:batch])}", flush=True)
    print(f"\n| packed length (batch 1) | dm2s2 ms | PyTorch ms | speedup |{onnx_head[0]}\n"
          f"| --- | --- | --- | --- |{onnx_head[1]}")
    for length in (32, 64, 128, 256, 512):
        a = statistics.median(ours(bench, "W4_length", threads, repeats, f"/length:{length}")[0])
        b = statistics.median(torch_side(shapes, "w4-length", threads, repeats, env, "--length", length)[0])
        print(f"| {length} | {a:.1f} | {b:.1f} | {b / a:.2f} |{against_onnx(a, [length])}", flush=True)


def openblas_environment():
    """PyTorch's fp32 products in training go to OpenBLAS. OpenBLAS 0.3.21 does not know some recent
    processors and falls back to its generic Prescott kernels, five times slower than its AVX-512 ones,
    or to its AVX2 Haswell ones; on an AVX-512 processor it is pointed at its AVX-512 kernels so that
    PyTorch is measured at its best. Returns the environment and a line naming the core chosen."""
    env = dict(os.environ)
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
    except OSError:
        return env, "OpenBLAS core for PyTorch: unknown (libopenblas.so.0 not found)"
    cpuinfo = Path("/proc/cpuinfo")
    flags = set()
    for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else []):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    best = "Cooperlake" if "avx512_bf16" in flags else "SkylakeX"
    narrow = core.lower() in ("prescott", "haswell") and "avx512f" in flags
    if "OPENBLAS_CORETYPE" in env:
        line = f"OpenBLAS core for PyTorch: {core} (OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']} from the environment)"
        if narrow:  # kept, since the environment asked for it, but PyTorch is then not at its best
            line += f"; on this AVX-512 processor {best} would be faster: unset OPENBLAS_CORETYPE to use it"
        return env, line
    if narrow:
        env["OPENBLAS_CORETYPE"] = best
        return env, (f"OpenBLAS core for PyTorch: {best} (OpenBLAS detected {core} on an AVX-512 processor; "
                     f"set OPENBLAS_CORETYPE={best})")
    return env, f"OpenBLAS core for PyTorch: {core} (detected)"


def efficiency_lines(lengths, shape, threads, median, peaks, onnx):
    """GFLOP/s of W1's products and their share of the register-only peaks. Counted: the encoder's
    weight products (Q, K, V, output and the two FFN layers: 4 h^2 + 2 h f multiply-adds per token and
    layer), which make most of the work; attention scores, the embeddings and DM2S2's own layers are not."""
    weights = 4 * shape["hidden"] ** 2 + 2 * shape["hidden"] * shape["intermediate"]
    tokens, padded = sum(lengths), len(lengths) * max(lengths)
    useful, performed = (2 * n * shape["layers"] * weights / 1e9 for n in (tokens, padded))
    print(f"W1 products: {useful:.1f} GFLOP useful ({tokens} tokens x {shape['layers']} layers x 2 x "
          f"{weights / 1e6:.2f} M weights); padded to {len(lengths)} x {max(lengths)}: {performed:.1f} GFLOP")
    fma, dot, bf16_kernels = peaks["fma"], peaks["dot"], peaks["bf16_kernels"]

    def share(gflops, peak, name, kind=""):
        if peak <= 0:
            return f"{gflops:.1f} GFLOP/s{kind} (no {name} register peak measured)"
        return (f"{gflops:.1f} GFLOP/s{kind}, {100 * gflops / peak:.0f} % of the {name} register peak "
                f"({peak:.0f} GFLOP/s on {threads} threads)")

    print(f"dm2s2 products: {peaks['blocking']}")
    print(f"W1 fp32 efficiency (dm2s2): {share(useful / median['W1 dm2s2 fp32'] * 1e3, fma, 'fp32 FMA')}")
    # bf16 products are measured against the instruction they run on: AMX tiles, vdpbf16ps, or fp32
    # FMA on rounded operands.
    bf16 = useful / median["W1 dm2s2 bf16"] * 1e3
    if "amx" in bf16_kernels:
        line = share(bf16, peaks["tiles"], "AMX tile")
    elif "bf16-dot" in bf16_kernels:
        line = share(bf16, dot, "vdpbf16ps")
    else:
        line = share(bf16, fma, "fp32 FMA")
    print(f"W1 bf16 efficiency (dm2s2, {bf16_kernels} products): {line}")
    if onnx:
        ms = median["W1 ONNX Runtime padded"]
        done = performed / ms * 1e3
        print(f"W1 fp32 efficiency (ONNX Runtime): {share(useful / ms * 1e3, fma, 'fp32 FMA', ' useful')}; "
              f"{done:.1f} GFLOP/s performed on the padded batch" + (f", {100 * done / fma:.0f} %" if fma > 0 else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench", required=True, help="the dm2s2_bench_workloads program")
    parser.add_argument("--products", help="the dm2s2_bench_products program (its register-only peaks give the "
                        "efficiency lines; needed by --full)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per process")
    parser.add_argument("--onnxruntime", metavar="DIR", help="npm install prefix holding onnxruntime-node: also time "
                        "ONNX Runtime on W1's encoder (the exported model is written there)")
    parser.add_argument("--full", action="store_true", help="also run the products, W3 and W4 and print their tables first")
    args = parser.parse_args()
    t = args.threads

    env, blas_note = openblas_environment()
    env["OMP_NUM_THREADS"] = str(t)
    shapes = os.path.join(tempfile.mkdtemp(prefix="dm2s2-compare-"), "shapes.json")
    run([args.bench, f"--w1_lengths={shapes}"])
    with open(shapes) as f:
        shape = json.load(f)
    lengths = shape["lengths"]
    print(f"machine: {os.cpu_count()} cores; {t} threads on every side")
    print(blas_note)
    print(f"W1 batch: packed lengths {lengths} ({sum(lengths)} tokens, padded to {max(lengths)})")
    onnx = OnnxRuntime(args.onnxruntime, shapes, shape["hidden"]) if args.onnxruntime else None
    peaks = register_peaks(args.products, t) if args.products else None

    if args.full:
        if not args.products:
            sys.exit("compare: --full needs --products")
        secondary_tables(args.bench, args.products, shapes, t, 3, env, onnx)
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
        "W1 ONNX Runtime padded": (lambda: onnx(lengths, t, args.repeats)) if onnx else None,
        "W5 dm2s2 fp32": (lambda: ours(args.bench, "W5_equal_lengths", t, args.repeats, "/bf16:0")) if onnx else None,
        "W5 dm2s2 bf16": (lambda: ours(args.bench, "W5_equal_lengths", t, args.repeats, "/bf16:1")) if onnx else None,
        "W5 ONNX Runtime": (lambda: onnx([max(lengths)] * len(lengths), t, args.repeats)) if onnx else None,
        "W2 dm2s2 fp32": lambda: ours(args.bench, "W2_train_step", t, max(3, args.repeats - 2)),
        "W2 PyTorch fp32": lambda: torch_side(shapes, "w2", t, max(3, args.repeats - 2), env),
    }
    cases = {name: measure for name, measure in cases.items() if measure is not None}
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
    if onnx:
        print(f"W1 fp32 padded on both sides, speedup vs ONNX Runtime: "
              f"{median['W1 ONNX Runtime padded'] / median['W1 dm2s2 fp32 padded']:.2f}")
        print(f"W5 ({len(lengths)} x {max(lengths)}, equal lengths: no padding anywhere) fp32 speedup vs ONNX Runtime: "
              f"{median['W5 ONNX Runtime'] / median['W5 dm2s2 fp32']:.2f}; bf16 vs ONNX Runtime fp32: "
              f"{median['W5 ONNX Runtime'] / median['W5 dm2s2 bf16']:.2f}")
    if peaks:
        efficiency_lines(lengths, shape, t, median, peaks, onnx)
    # The contract lines, last (benchmarks/README.md).
    print(f"W1 fp32 speedup vs PyTorch: {torch_w1 / median['W1 dm2s2 fp32']:.2f}")
    print(f"W2 fp32 speedup vs PyTorch: {median['W2 PyTorch fp32'] / median['W2 dm2s2 fp32']:.2f}")
    print(f"W1 bf16 speedup vs PyTorch fp32: {torch_w1 / median['W1 dm2s2 bf16']:.2f}")
    if onnx:
        print(f"W1 fp32 speedup vs ONNX Runtime: {median['W1 ONNX Runtime padded'] / median['W1 dm2s2 fp32']:.2f}")
        print(f"W1 bf16 speedup vs ONNX Runtime fp32: {median['W1 ONNX Runtime padded'] / median['W1 dm2s2 bf16']:.2f}")


if __name__ == "__main__":
    main()
