#!/usr/bin/env python3
"""Batched serving throughput: `smolt serve` with one client at a time against N concurrent
clients, on the same work (same prompt, same number of output tokens: greedy, ignore_eos), and
the same with the requests spread over the base model and three adapters.

    python3 bench/serve_batch.py --smolt target/release/smolt [--model M.gguf] [--clients 16]
                                 [--tokens 64] [--requests 32] [--schema bench/sroie/schema.json]

With `--schema`, every request asks for JSON under that schema (`response_format` json_schema,
constrained decoding, no ignore_eos: the answer ends where the grammar does, at most --tokens),
as a receipts service would; the same prompt and greedy decoding still give every request the
same answer, so one client and N clients do the same work (the table reports tokens/request).

Writes three random LoRA adapters (PEFT layout, rank 8 on q/k/v/o/gate/up/down, Gemma 3 270M
shapes) into a temporary folder, starts the server on a free loopback port, and prints one
table row per load: requests/s, output tok/s, p50/p99 latency. Standard library only.
"""
import argparse
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# Gemma 3 270M: layers, d_model, q_dim, kv_dim, d_ff.
GEMMA_270M = (18, 640, 1024, 256, 2048)
PROMPT = ("Receipt:\nSTARBUCKS COFFEE #1234\n12 MAIN ST\n2x LATTE 9.50\nMUFFIN 3.25\n"
          "TOTAL 12.75\nVISA ****4242\n")


def write_adapter(path, dims, seed):
    layers, d, q, kv, f = dims
    shapes = {"self_attn.q_proj": (d, q), "self_attn.k_proj": (d, kv),
              "self_attn.v_proj": (d, kv), "self_attn.o_proj": (q, d),
              "mlp.gate_proj": (d, f), "mlp.up_proj": (d, f), "mlp.down_proj": (f, d)}
    r = 8
    rng = random.Random(seed)
    tensors = {}
    for il in range(layers):
        for mod, (inp, out) in shapes.items():
            base = f"base_model.model.model.layers.{il}.{mod}"
            tensors[f"{base}.lora_A.weight"] = ([r, inp], [rng.gauss(0, 0.02) for _ in range(r * inp)])
            tensors[f"{base}.lora_B.weight"] = ([out, r], [rng.gauss(0, 0.02) for _ in range(out * r)])
    header, blobs, off = {}, [], 0
    for name, (shape, vals) in tensors.items():
        b = struct.pack(f"<{len(vals)}f", *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "adapter_model.safetensors"), "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with open(os.path.join(path, "adapter_config.json"), "w") as fh:
        json.dump({"peft_type": "LORA", "r": r, "lora_alpha": 16, "use_rslora": False,
                   "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"], "task_type": "CAUSAL_LM"}, fh)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def request(base, model, tokens, schema=None):
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0}
    if schema is None:
        body["ignore_eos"] = True
    else:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "answer", "schema": schema}}
    body = json.dumps(body).encode()
    req = urllib.request.Request(base + "/v1/completions", body,
                                 {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        out = json.load(r)
    return time.perf_counter() - t0, out["usage"]["completion_tokens"]


def step_counts(base):
    """(batched steps, sequences in them) so far, from the server's Prometheus metrics."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    got = {}
    for line in text.splitlines():
        for name in ("smolt_serve_batch_steps_total", "smolt_serve_batch_sequences_total"):
            if line.startswith(name + " "):
                got[name] = float(line.split()[1])
    return got.get("smolt_serve_batch_steps_total", 0), got.get("smolt_serve_batch_sequences_total", 0)


def load(base, models, clients, n, tokens, schema=None):
    jobs = [models[i % len(models)] for i in range(n)]
    steps0, seqs0 = step_counts(base)
    lat, toks, lock = [], [], threading.Lock()

    def worker():
        while True:
            with lock:
                if not jobs:
                    return
                m = jobs.pop()
            dt, k = request(base, m, tokens, schema)
            with lock:
                lat.append(dt)
                toks.append(k)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    steps1, seqs1 = step_counts(base)
    lat.sort()
    return {"batch": (seqs1 - seqs0) / max(steps1 - steps0, 1), "clients": clients, "requests": n, "req_s": n / wall, "tok_s": sum(toks) / wall,
            "tok_req": sum(toks) / n,
            "p50": statistics.median(lat), "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smolt", default="target/release/smolt")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--schema", help="JSON schema file: constrained JSON answers")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="an extra `smolt serve` argument (repeat), e.g. --serve-arg=--keep-panels")
    a = ap.parse_args()
    schema = None
    if a.schema:
        with open(a.schema) as fh:
            schema = json.load(fh)
    tmp = tempfile.mkdtemp(prefix="smolt-serve-bench-")
    names = []
    for i in range(3):
        write_adapter(os.path.join(tmp, f"a{i}"), GEMMA_270M, i)
        names.append(f"a{i}")
    port = free_port()
    cmd = [a.smolt, "serve", "--model", a.model, "--port", str(port),
           "--served-model-name", "base", "--max-batch", str(max(a.clients, 1))]
    for n in names:
        cmd += ["--adapter", f"{n}={os.path.join(tmp, n)}"]
    cmd += a.serve_arg
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=1).read()
                break
            except Exception:
                if srv.poll() is not None:
                    sys.exit("server died: " + srv.stderr.read().decode())
                time.sleep(0.5)
        request(base, "base", 4)  # warm-up: packs the decode layouts
        rows = [("base, 1 client", load(base, ["base"], 1, max(4, a.requests // 4), a.tokens, schema)),
                (f"base, {a.clients} clients",
                 load(base, ["base"], a.clients, a.requests, a.tokens, schema)),
                (f"base + 3 adapters, {a.clients} clients",
                 load(base, ["base"] + names, a.clients, a.requests, a.tokens, schema))]
        one = rows[0][1]["tok_s"]
        what = f"JSON under {os.path.basename(a.schema)}, at most {a.tokens} tokens" if schema \
            else f"{a.tokens} output tokens each"
        print(f"| load ({what}) | requests | tokens/request | req/s | output tok/s | vs 1 client | mean batch | p50 s | p99 s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, r in rows:
            print(f"| {label} | {r['requests']} | {r['tok_req']:.1f} | {r['req_s']:.2f} | {r['tok_s']:.1f} | "
                  f"{r['tok_s'] / one:.2f}x | {r['batch']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    finally:
        srv.terminate()
        srv.wait(timeout=60)


if __name__ == "__main__":
    main()
