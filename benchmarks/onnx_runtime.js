#!/usr/bin/env node
// ONNX Runtime side of W1 and the batch-1 latencies (benchmarks/README.md): times the BERT-base encoder
// that benchmarks/onnx_export.py wrote, on the CPU execution provider of onnxruntime-node.
//
//   node benchmarks/onnx_runtime.js --model FILE --lengths 49,48,... [--hidden 768] [--threads T]
//        [--repeats N] [--warmup W] [--prefix DIR]
//
// The batch is padded to its longest record with a key-padding mask, as ONNX Runtime has no
// padding-free path. onnxruntime-node is loaded from the npm install prefix DIR (its node_modules),
// or else through NODE_PATH. Prints one JSON line: the median and all times of the timed runs in
// milliseconds, and the process's peak resident memory in KiB.
'use strict';

const path = require('path');

function parseArgs(argv) {
  const args = { hidden: 768, threads: 1, repeats: 10, warmup: 2, prefix: null, model: null, lengths: null };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  if (!args.model || !args.lengths) throw new Error('--model and --lengths are required');
  args.lengths = args.lengths.split(',').map(Number);
  for (const key of ['hidden', 'threads', 'repeats', 'warmup']) args[key] = Number(args[key]);
  const positive = (v) => Number.isInteger(v) && v > 0;
  if (!args.lengths.every(positive) || !positive(args.hidden) || !positive(args.threads) || !positive(args.repeats) ||
      !(Number.isInteger(args.warmup) && args.warmup >= 0)) {
    throw new Error('lengths, hidden, threads and repeats must be positive integers, warmup non-negative');
  }
  return args;
}

function loadRuntime(prefix) {
  if (!prefix) return require('onnxruntime-node');
  return require(require.resolve('onnxruntime-node', { paths: [path.resolve(prefix)] }));
}

// Normally distributed float32 values from a fixed seed (mulberry32 and Box-Muller).
function randomNormal(count, seed) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const out = new Float32Array(count);
  for (let i = 0; i < count; ++i) out[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const ort = loadRuntime(args.prefix);
  const session = await ort.InferenceSession.create(args.model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });

  const batch = args.lengths.length;
  const longest = Math.max(...args.lengths);
  const mask = new Uint8Array(batch * longest);  // 1: padding
  args.lengths.forEach((length, b) => mask.fill(1, b * longest + length, (b + 1) * longest));
  const feeds = {
    x: new ort.Tensor('float32', randomNormal(batch * longest * args.hidden, 2022), [batch, longest, args.hidden]),
    mask: new ort.Tensor('bool', mask, [batch, longest]),
  };

  for (let i = 0; i < args.warmup; ++i) await session.run(feeds);
  const times = [];
  for (let i = 0; i < args.repeats; ++i) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  await session.release();
  console.log(JSON.stringify({
    runtime: `onnxruntime-node ${ort.env.versions.node}`, threads: args.threads, batch, padded_length: longest,
    tokens: args.lengths.reduce((a, b) => a + b, 0), median_ms: median(times), times_ms: times,
    peak_rss_kib: process.resourceUsage().maxRSS,
  }));
}

main().catch((error) => {
  console.error(`onnx_runtime.js: ${error.message}`);
  process.exit(1);
});
