#!/usr/bin/env python3
"""llama.cpp peer figures, as JSON lines on stdout (standard library only).

  speed    `llama-bench -m MODEL -t T -p 512 -n 128 -r 3 -o json` for each T (and --runs times):
           one line per (figure, threads) with the per-repetition tok/s samples and min/median/max.
  receipt  end-to-end latency of one real receipt prompt -> JSON with llama.cpp's own JSON-schema
           grammar: `llama-completion -f PROMPT --json-schema-file SCHEMA --temp 0 --top-k 1 -no-cnv`
           (in this llama.cpp version `llama-completion` is the classic one-shot CLI; `llama-cli`
           is the chat front end). Wall time is the whole process (model load included); the
           llama_perf lines give prompt-eval and generation time without the load.

Progress and llama.cpp's own logs go to stderr; raw outputs are kept under --raw-dir.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.environ.get("SMOLT_BENCH_DIR", os.path.join(HERE, ".work"))
BIN = os.path.join(WORK, "llama.cpp", "build", "bin")
DEFAULT_MODEL = os.path.expanduser("~/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf")
PROMPT_TEMPLATE = "Receipt OCR:\n{input}\n\nJSON:"
RECEIPT_SCHEMA = {
    "type": "object",
    "properties": {
        # maxLength keeps a base model that loops inside a string ("0000...") from running to -n:
        # the output then stays valid JSON of bounded length. Generous for real SROIE labels.
        "company": {"type": "string", "maxLength": 64},
        "date": {"type": "string", "maxLength": 16},
        "address": {"type": "string", "maxLength": 128},
        "total": {"type": "string", "maxLength": 16},
    },
    "required": ["company", "date", "address", "total"],
    "additionalProperties": False,
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def die(msg):
    print(f"llamacpp_bench.py: {msg}", file=sys.stderr)
    sys.exit(2)


def tool(name):
    p = os.path.join(BIN, name)
    if not os.access(p, os.X_OK):
        die(f"{p} not found; build it with bench/build_llamacpp.sh")
    return p


def summary(samples):
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples)}


def speed(args, raw_dir):
    exe = tool("llama-bench")
    pooled = {}  # (figure, threads) -> samples, plus metadata
    for t in args.threads:
        for run in range(args.runs):
            cmd = [exe, "-m", args.model, "-t", str(t), "-p", "512", "-n", "128", "-r", str(args.reps), "-o", "json"]
            log("+ " + " ".join(cmd))
            r = subprocess.run(cmd, capture_output=True, text=True)
            raw = os.path.join(raw_dir, f"llama-bench-t{t}-run{run}.json")
            with open(raw, "w") as fh:
                fh.write(r.stdout)
            if r.returncode != 0:
                sys.stderr.write(r.stderr[-3000:])
                die(f"llama-bench failed (exit {r.returncode}); its stderr is above")
            try:
                rows = json.loads(r.stdout)
            except ValueError:
                die(f"llama-bench printed no JSON (kept in {raw})")
            for row in rows:
                if row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
                    fig, name = f"pp{row['n_prompt']}_t{t}", f"pp{row['n_prompt']}"
                elif row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
                    fig, name = f"tg{row['n_gen']}_t{t}", f"tg{row['n_gen']}"
                else:
                    continue
                e = pooled.setdefault(fig, {"samples": [], "row": row, "name": name, "threads": t})
                e["samples"].extend(row.get("samples_ts") or [row["avg_ts"]])
    cmd_str = f"llama-bench -m {os.path.basename(args.model)} -t T -p 512 -n 128 -r {args.reps} -o json" + (
        f" x{args.runs}" if args.runs > 1 else "")
    for fig, e in pooled.items():
        row = e["row"]
        rec = {
            "side": "peer",
            "tool": "llama.cpp",
            "figure": fig,
            "config": f"{row.get('model_type', '')}, -t {e['threads']}".strip(", "),
            "unit": "tok/s",
            "better": "higher",
            "samples": e["samples"],
            **{f"tok_s_{k}": v for k, v in summary(e["samples"]).items()},
            "threads": e["threads"],
            "model": os.path.abspath(args.model),
            "versions": {
                "llama.cpp build_commit": row.get("build_commit"),
                "llama.cpp build_number": row.get("build_number"),
                "backends": row.get("backends"),
                "cpu_info": row.get("cpu_info"),
            },
            "command": cmd_str.replace("-t T", f"-t {e['threads']}"),
        }
        print(json.dumps(rec), flush=True)


def parse_perf(stderr):
    """Prompt-eval and eval figures from llama_perf_context_print / common_perf_print lines."""
    out = {}
    for key, pat in (("load_ms", r"load time\s*=\s*([\d.]+) ms"),
                     ("prompt_ms", r"prompt eval time\s*=\s*([\d.]+) ms\s*/\s*(\d+) tokens"),
                     ("eval_ms", r"\beval time\s*=\s*([\d.]+) ms\s*/\s*(\d+) runs"),
                     ("total_ms", r"total time\s*=\s*([\d.]+) ms")):
        m = None
        for m in re.finditer(pat, stderr):
            pass  # keep the last match (the context's, printed after the sampler's)
        if m:
            out[key] = float(m.group(1))
            if m.lastindex and m.lastindex >= 2:
                out[key.replace("_ms", "_tokens")] = int(m.group(2))
    return out


def receipt(args, raw_dir):
    exe = tool("llama-completion")
    if not args.data or not os.path.isfile(args.data):
        die("the receipt latency needs --data PATH.jsonl (SROIE records)")
    with open(args.data, encoding="utf-8") as fh:
        lines = [l for l in fh if l.strip()]
    if args.receipt_index >= len(lines):
        die(f"--receipt-index {args.receipt_index} but {args.data} has {len(lines)} records")
    rec = json.loads(lines[args.receipt_index])
    prompt = PROMPT_TEMPLATE.format(input=rec["input"])
    prompt_file = os.path.join(raw_dir, "receipt_prompt.txt")
    schema_file = os.path.join(raw_dir, "receipt_schema.json")
    with open(prompt_file, "w", encoding="utf-8") as fh:
        fh.write(prompt)
    with open(schema_file, "w") as fh:
        json.dump(RECEIPT_SCHEMA, fh)
    samples, gens = [], []
    for i in range(args.latency_reps):
        cmd = [exe, "-m", args.model, "-t", str(args.threads[0]), "-f", prompt_file, "--json-schema-file", schema_file,
               "--temp", "0", "--top-k", "1", "-n", str(args.max_new), "-c", "2048", "-no-cnv",
               "--no-display-prompt", "--simple-io", "--seed", "0"] + (["--lora", args.lora] if args.lora else [])
        log("+ " + " ".join(cmd))
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        with open(os.path.join(raw_dir, f"receipt-{i}.out"), "w") as fh:
            fh.write(r.stdout)
        with open(os.path.join(raw_dir, f"receipt-{i}.err"), "w") as fh:
            fh.write(r.stderr)
        if r.returncode != 0:
            sys.stderr.write(r.stderr[-3000:])
            die(f"llama-completion failed (exit {r.returncode}); its stderr is above")
        perf = parse_perf(r.stderr)
        text = r.stdout.strip()
        try:
            json.loads(text[text.index("{"):text.rindex("}") + 1])
            valid = True
        except ValueError:
            valid = False
        samples.append(wall)
        gens.append({"wall_s": wall, "valid_json": valid, "output": text, **perf})
        log(f"  wall {wall:.3f} s  {perf}  valid JSON: {valid}")
    rec_out = {
        "side": "peer",
        "tool": "llama.cpp",
        "figure": "receipt_json_latency_s",
        "config": f"receipt #{args.receipt_index} ({rec.get('id', '?')}), JSON-schema grammar, greedy, -t {args.threads[0]}"
                  + (f", LoRA {os.path.basename(args.lora)}" if args.lora else ", base model") + ", wall incl. model load",
        "unit": "s",
        "better": "lower",
        "samples": samples,
        **{f"s_{k}": v for k, v in summary(samples).items()},
        "runs": gens,
        "prompt_file": prompt_file,
        "schema_file": schema_file,
        "model": os.path.abspath(args.model),
        "command": "llama-completion -m MODEL -f receipt_prompt.txt --json-schema-file receipt_schema.json --temp 0 --top-k 1 "
                   f"-n {args.max_new} -c 2048 -no-cnv -t {args.threads[0]}" + (f" --lora {args.lora}" if args.lora else ""),
    }
    print(json.dumps(rec_out), flush=True)
    # Without load time: prompt eval + generation as llama.cpp reports them.
    inner = [(g.get("prompt_ms", 0) + g.get("eval_ms", 0)) / 1000 for g in gens if "prompt_ms" in g]
    if inner:
        print(json.dumps({**rec_out, "figure": "receipt_json_compute_s",
                          "config": rec_out["config"].replace("wall incl. model load", "prompt eval + generation, no load"),
                          "samples": inner, "runs": None,
                          **{f"s_{k}": v for k, v in summary(inner).items()}}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="*", choices=["speed", "receipt"], default=["speed"])
    ap.add_argument("--model", default=os.environ.get("SMOLT_BENCH_MODEL", DEFAULT_MODEL))
    ap.add_argument("--threads", default="2,1", help="comma-separated thread counts (default 2,1)")
    ap.add_argument("--reps", type=int, default=3, help="llama-bench -r (default 3)")
    ap.add_argument("--runs", type=int, default=1, help="llama-bench invocations per thread count (default 1)")
    ap.add_argument("--data", help="SROIE JSONL for the receipt latency")
    ap.add_argument("--receipt-index", type=int, default=0)
    ap.add_argument("--latency-reps", type=int, default=3)
    ap.add_argument("--max-new", type=int, default=400, help="-n; the schema bounds the output below this")
    ap.add_argument("--lora", help="LoRA adapter GGUF for llama.cpp (e.g. exported by smolt), for the receipt latency")
    ap.add_argument("--raw-dir", default=os.path.join(WORK, "results", "llamacpp-raw"))
    args = ap.parse_args()
    args.threads = [int(t) for t in args.threads.split(",") if t]
    if not os.path.isfile(args.model):
        die(f"model {args.model} not found (`smolt fetch` caches it; or pass --model PATH.gguf)")
    os.makedirs(args.raw_dir, exist_ok=True)
    if "speed" in args.what:
        speed(args, args.raw_dir)
    if "receipt" in args.what:
        receipt(args, args.raw_dir)


if __name__ == "__main__":
    main()
