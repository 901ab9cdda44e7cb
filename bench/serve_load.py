#!/usr/bin/env python3
"""Load test: `smolt serve` against `llama-server` side by side, on real receipt prompts with a
JSON schema, many concurrent clients, requests spread over the base model and three LoRA adapters.

    python3 bench/serve_load.py --smolt target/release/smolt \\
        --llama-server bench/.work/llama.cpp/build/bin/llama-server \\
        --run runs/sroie --data sroie/valid.jsonl [--clients 32,64] [--per-client 2] \\
        [--max-tokens 128] [--threads 2] [--time-limit 300] [--out results.jsonl]

- Adapters: the SROIE run's own adapter (`--run`, a `smolt train` run directory, PEFT format)
  and two variants of it written by this script (lora_B scaled by 0.8 and 1.2, seeded Gaussian
  noise added to lora_A): distinct weights that still answer like a receipt model, so both
  servers stop where a trained adapter stops. smolt serves the PEFT folders; llama-server gets
  each one as a GGUF LoRA made by `smolt export DIR --format gguf-lora`, loaded with
  `--lora-init-without-apply` and chosen per request with `"lora": [{"id": i, "scale": 1}, ...]`
  listing every adapter (scale 0 for the others, all 0 for the base model: an empty list would
  mean the server's global scales, which are 1.0 for every adapter).
- Prompts: the records of `--data` (`{"input": OCR text, ...}` per line) rendered with the run's
  `template` (config.toml, `{input}` replaced); request k takes record k mod N. Completions
  endpoint, greedy (temperature 0), the same `max_tokens` on both sides, the schema of
  `--schema` as `response_format` json_schema (smolt) and as llama-server's own `json_schema`
  field (its /v1/completions ignores `response_format`; only its chat endpoint reads it).
- Loads: for each client count, `mixed` (request k goes to base, adapter 1, 2, 3, round-robin)
  and `single` (every request on the SROIE adapter); each client sends `--per-client` requests
  one after another. Each (load, server) pair gets a fresh server process (so its peak RSS,
  VmHWM from /proc/PID/status, belongs to that load alone; it includes loading the model) and
  one warm-up request per model before the clock starts. The two servers alternate which goes
  first from one load to the next. A load stops sending new requests after `--time-limit`
  seconds (those are reported as not sent); a request that fails or times out counts as failed.
- Figures per (load, server): requests done / failed / not sent, requests/s and output tok/s
  (completion tokens from each response's `usage`, over the load's wall time), mean output
  tokens per request and how many hit max_tokens, answers that parse as JSON, p50 / p99
  latency, peak RSS. Prints a Markdown table; `--out` appends one JSON line per row.

Loopback only; standard library only (Python >= 3.11 for tomllib). llama-server needs `-np`
slots and a total context of slots x per-slot context: the per-slot context is the longest
rendered prompt plus max_tokens, rounded up to 256 (`--slot-ctx` overrides).
"""
import argparse
import array
import json
import os
import random
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---- adapters -------------------------------------------------------------------------------

def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}; this script reads F32 adapters only")
        a, b = info["data_offsets"]
        vals = array.array("f")
        vals.frombytes(data[a:b])
        tensors[name] = (info["shape"], vals)
    return tensors


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (shape, vals) in tensors.items():
        b = vals.tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_variant(src_dir, dst_dir, b_scale, seed):
    """A copy of the PEFT adapter in src_dir with lora_B scaled by b_scale and Gaussian noise
    (a tenth of each lora_A tensor's own standard deviation) added to lora_A."""
    os.makedirs(dst_dir, exist_ok=True)
    rng = random.Random(seed)
    tensors = read_safetensors(os.path.join(src_dir, "adapter_model.safetensors"))
    out = {}
    for name, (shape, vals) in tensors.items():
        if ".lora_B." in name:
            vals = array.array("f", (v * b_scale for v in vals))
        elif ".lora_A." in name:
            sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
            vals = array.array("f", (v + rng.gauss(0, 0.1 * sd) for v in vals))
        out[name] = (shape, vals)
    write_safetensors(os.path.join(dst_dir, "adapter_model.safetensors"), out)
    shutil.copy(os.path.join(src_dir, "adapter_config.json"), dst_dir)


def prepare_adapters(a, work):
    """[(name, peft_dir, gguf_path)]: the run's adapter and two variants, each exported."""
    adir = os.path.join(work, "adapters")
    os.makedirs(adir, exist_ok=True)
    specs = [("sroie", a.run, None), ("sroie_b", os.path.join(adir, "sroie_b"), (0.8, 1)),
             ("sroie_c", os.path.join(adir, "sroie_c"), (1.2, 2))]
    out = []
    for name, d, variant in specs:
        if variant and not os.path.exists(os.path.join(d, "adapter_model.safetensors")):
            print(f"writing adapter {name} (lora_B x{variant[0]}, noise seed {variant[1]})",
                  file=sys.stderr)
            write_variant(a.run, d, *variant)
        gguf = os.path.join(adir, f"{name}.gguf")
        if not os.path.exists(gguf):
            cmd = [a.smolt, "export", d, "--format", "gguf-lora", "--model", a.model,
                   "--out", gguf]
            print("$ " + " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, check=True, stdout=sys.stderr)
        out.append((name, d, gguf))
    return out


# ---- servers --------------------------------------------------------------------------------

class Server:
    """One server process on a loopback port; `models` are the names requests use."""

    def __init__(self, side, cmd, port, log):
        self.side, self.cmd, self.port = side, cmd, port
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=300):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                sys.exit(f"{self.side} exited with {self.proc.returncode} while starting "
                         f"(log: {self.log.name})")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.5)
        sys.exit(f"{self.side} not ready after {timeout}s (log: {self.log.name})")

    def peak_rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_smolt(a, adapters, clients, port, log):
    cmd = [a.smolt, "serve", "--model", a.model, "--served-model-name", "base",
           "--host", "127.0.0.1", "--port", str(port),
           "--max-batch", str(clients), "--max-queue", str(max(clients, 64))]
    for name, d, _ in adapters:
        cmd += ["--adapter", f"{name}={d}"]
    return Server("smolt", cmd, port, log)


def start_llama(a, adapters, clients, slot_ctx, port, log):
    cmd = [a.llama_server, "-m", a.model, "--host", "127.0.0.1", "--port", str(port),
           "-np", str(clients), "-c", str(clients * slot_ctx), "-t", str(a.threads),
           "-tb", str(a.threads), "--no-webui", "--lora-init-without-apply",
           # One --lora with the files comma-separated: repeated --lora is deprecated.
           "--lora", ",".join(gguf for _, _, gguf in adapters)]
    return Server("llama-server", cmd, port, log)


# ---- requests -------------------------------------------------------------------------------

def body_for(side, model, prompt, schema, max_tokens, adapter_ids):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    if side == "smolt":
        body["model"] = model
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "receipt", "schema": schema}}
    else:
        # llama-server's /v1/completions reads its own `json_schema` field, not response_format.
        body["json_schema"] = schema
        # Every adapter's scale, explicitly: an empty list means the server's global scales
        # (1.0 for each --lora, even with --lora-init-without-apply), not "none".
        body["lora"] = [{"id": i, "scale": 1.0 if n == model else 0.0}
                        for n, i in adapter_ids.items()]
    return body


def send(base, body, timeout):
    req = urllib.request.Request(base + "/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = json.load(r)
        dt = time.perf_counter() - t0
        choice = out["choices"][0]
        return {"ok": True, "latency": dt, "tokens": out["usage"]["completion_tokens"],
                "prompt_tokens": out["usage"]["prompt_tokens"],
                "finish": choice.get("finish_reason"), "text": choice.get("text", "")}
    except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode(errors="replace")
        return {"ok": False, "latency": time.perf_counter() - t0, "error": f"HTTP {e.code}: {detail}"}
    except Exception as e:  # timeouts, resets, bad bodies
        return {"ok": False, "latency": time.perf_counter() - t0, "error": repr(e)[:300]}


def run_load(server, jobs, clients, time_limit, request_timeout):
    """Sends `jobs` (bodies) from `clients` threads; returns the figures."""
    pending = list(enumerate(jobs))
    pending.reverse()
    results, lock = [], threading.Lock()
    t0 = time.perf_counter()

    def worker():
        while True:
            with lock:
                if not pending or time.perf_counter() - t0 > time_limit:
                    return
                k, body = pending.pop()
            r = send(server.base, body, request_timeout)
            r["k"] = k
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    lat = sorted(r["latency"] for r in ok)
    toks = sum(r["tokens"] for r in ok)
    valid = 0
    for r in ok:
        try:
            json.loads(r["text"])
            valid += 1
        except ValueError:
            pass
    errors = {}
    for r in results:
        if not r["ok"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {
        "requests": len(jobs), "done": len(ok), "failed": len(results) - len(ok),
        "not_sent": len(jobs) - len(results), "wall_s": wall,
        "req_s": len(ok) / wall, "out_tok_s": toks / wall, "out_tokens": toks,
        "mean_out_tokens": toks / len(ok) if ok else 0.0,
        "at_max_tokens": sum(1 for r in ok if r["finish"] == "length"),
        "valid_json": valid,
        "p50_s": statistics.median(lat) if lat else None,
        "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
        "errors": errors,
        "tokens_by_request": {r["k"]: r["tokens"] for r in ok},
    }


# ---- main -----------------------------------------------------------------------------------

def main():
    bench_dir = os.environ.get("SMOLT_BENCH_DIR", os.path.join(HERE, ".work"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smolt", default="target/release/smolt")
    ap.add_argument("--llama-server",
                    default=os.path.join(bench_dir, "llama.cpp", "build", "bin", "llama-server"))
    ap.add_argument("--run", required=True, help="smolt train run directory (PEFT adapter + config.toml)")
    ap.add_argument("--data", required=True, help="JSONL with an `input` per line (receipts)")
    ap.add_argument("--schema", default=os.path.join(HERE, "sroie", "schema.json"))
    ap.add_argument("--model", help="base GGUF (default: the run's config.toml `model`)")
    ap.add_argument("--clients", default="32,64")
    ap.add_argument("--per-client", type=int, default=2)
    ap.add_argument("--loads", default="mixed,single")
    ap.add_argument("--configs", help="CLIENTS:LOAD,... instead of every --clients x --loads "
                    "(e.g. 32:mixed,32:single,64:mixed)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="llama-server -t/-tb")
    ap.add_argument("--slot-ctx", type=int, help="llama-server context per slot")
    ap.add_argument("--time-limit", type=float, default=300, help="seconds per load and server")
    ap.add_argument("--request-timeout", type=float, default=600)
    ap.add_argument("--sides", default="smolt,llama-server")
    ap.add_argument("--work", default=os.path.join(bench_dir, "serve-load"))
    ap.add_argument("--out", help="append one JSON line per row to this file")
    a = ap.parse_args()

    with open(os.path.join(a.run, "config.toml"), "rb") as f:
        cfg = tomllib.load(f)
    a.model = os.path.expanduser(a.model or cfg["model"])
    template = cfg["template"]
    with open(a.schema) as f:
        schema = json.load(f)
    prompts = []
    with open(a.data) as f:
        for line in f:
            if line.strip():
                prompts.append(template.replace("{input}", json.loads(line)["input"]))
    os.makedirs(a.work, exist_ok=True)
    logs = os.path.join(a.work, "logs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(logs, exist_ok=True)
    adapters = prepare_adapters(a, a.work)
    names = [n for n, _, _ in adapters]
    adapter_ids = {n: i for i, n in enumerate(names)}
    sides = a.sides.split(",")
    clients_list = [int(c) for c in a.clients.split(",")]
    slot_ctx = a.slot_ctx  # measured when llama-server first starts

    if a.configs:
        configs = [(int(c), l) for c, l in (x.split(":") for x in a.configs.split(","))]
    else:
        configs = [(c, l) for c in clients_list for l in a.loads.split(",")]
    rows = []
    order = 0
    for clients, load in configs:
        models = ["base"] + names if load == "mixed" else [names[0]]
        n = clients * a.per_client
        plan = [(models[k % len(models)], prompts[k % len(prompts)]) for k in range(n)]
        run_sides = sides if order % 2 == 0 else list(reversed(sides))
        order += 1
        for side in run_sides:
            port = free_port()
            log = os.path.join(logs, f"{side}-{clients}-{load}.log")
            if side == "smolt":
                srv = start_smolt(a, adapters, clients, port, log)
            else:
                if not slot_ctx:
                    slot_ctx = measure_slot_ctx(a, prompts, logs)
                srv = start_llama(a, adapters, clients, slot_ctx, port, log)
            try:
                srv.wait_ready()
                # Warm-up, not timed: one short request per model in this load.
                for m in dict.fromkeys(models):
                    r = send(srv.base, body_for(side, m, prompts[0], schema, 8, adapter_ids),
                             a.request_timeout)
                    if not r["ok"]:
                        print(f"warm-up on {side} ({m}) failed: {r['error']}", file=sys.stderr)
                jobs = [body_for(side, m, p, schema, a.max_tokens, adapter_ids) for m, p in plan]
                print(f"{side}: {clients} clients, {load}, {n} requests ...", file=sys.stderr)
                with open("/proc/loadavg") as f:
                    loadavg = float(f.read().split()[0])
                fig = run_load(srv, jobs, clients, a.time_limit, a.request_timeout)
                fig["peak_rss_mib"] = srv.peak_rss_mib()
            finally:
                srv.stop()
            fig.update({"side": side, "clients": clients, "load": load, "loadavg": loadavg,
                        "max_tokens": a.max_tokens, "command": " ".join(srv.cmd)})
            print(f"  {fig['done']} done, {fig['failed']} failed, {fig['not_sent']} not sent, "
                  f"{fig['req_s']:.2f} req/s, {fig['out_tok_s']:.1f} out tok/s, "
                  f"p50 {fig['p50_s']}, RSS {fig['peak_rss_mib']}", file=sys.stderr)
            if fig["errors"]:
                print(f"  errors: {fig['errors']}", file=sys.stderr)
            rows.append(fig)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps({k: v for k, v in fig.items()
                                        if k != "tokens_by_request"}) + "\n")
    print_table(rows, a)
    print(f"\nserver logs: {logs}", file=sys.stderr)


def measure_slot_ctx(a, prompts, logs):
    """Longest prompt in tokens (llama.cpp's tokenizer, BOS included) + max_tokens, rounded up
    to 256."""
    tok = os.path.join(os.path.dirname(a.llama_server), "llama-tokenize")
    longest = max(prompts, key=len)
    path = os.path.join(logs, "longest-prompt.txt")
    with open(path, "w") as f:
        f.write(longest)
    out = subprocess.run([tok, "-m", a.model, "-f", path, "--show-count", "--log-disable"],
                         capture_output=True, text=True)
    m = re.search(r"Total number of tokens: (\d+)", out.stdout + out.stderr)
    # The longest text need not be the most tokens: leave a margin.
    n = int(int(m.group(1)) * 1.25) if m else 2048
    return (n + a.max_tokens + 255) // 256 * 256


def print_table(rows, a):
    print(f"| load | server | requests | failed | req/s | output tok/s | out tokens/req "
          f"(at max {a.max_tokens}) | valid JSON | p50 s | p99 s | peak RSS MiB | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        label = f"{r['clients']} clients, " + ("base + 3 adapters" if r["load"] == "mixed"
                                               else "1 adapter")
        sent = r["done"] + r["failed"]
        fails = f"{r['failed']}" + (f" (+{r['not_sent']} not sent)" if r["not_sent"] else "")
        p = (lambda x: f"{x:.2f}" if x is not None else "—")
        rss = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] else "—"
        print(f"| {label} | {r['side']} | {sent} | {fails} | {r['req_s']:.2f} | "
              f"{r['out_tok_s']:.1f} | {r['mean_out_tokens']:.1f} ({r['at_max_tokens']}) | "
              f"{r['valid_json']}/{r['done']} | {p(r['p50_s'])} | {p(r['p99_s'])} | {rss} | "
              f"{r['loadavg']:.1f} |")
    print()
    by = {(r["clients"], r["load"], r["side"]): r for r in rows}
    for (c, load, side), r in by.items():
        if side != "smolt" or (c, load, "llama-server") not in by:
            continue
        peer = by[(c, load, "llama-server")]
        if not peer["req_s"]:
            print(f"- {c} clients, {load}: llama-server finished no request; no ratio")
            continue
        ratio = r["req_s"] / peer["req_s"]
        tratio = r["out_tok_s"] / peer["out_tok_s"]
        both = [(t, peer["tokens_by_request"][k]) for k, t in r["tokens_by_request"].items()
                if k in peer["tokens_by_request"]]
        same = sum(1 for t, u in both if t == u)
        near = sum(1 for t, u in both if abs(t - u) <= 1)
        print(f"- {c} clients, {load}: smolt / llama-server = **{ratio:.2f}x** requests/s, "
              f"{tratio:.2f}x output tok/s; of the {len(both)} requests both answered, "
              f"{same} have the same output length, {near} within one token")


if __name__ == "__main__":
    main()
