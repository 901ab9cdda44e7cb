#!/usr/bin/env python3
"""smolt's side of the benchmark, as JSON lines in the same shape as the peers' (see report.py).

  speed    `smolt bench --model M --prompt-tokens 512 --gen-tokens 128 --threads T --json`, --reps times
           per thread count; smolt prints {"prefill_tok_s": x, "decode_tok_s": y} (numbers or lists).
           -> figures pp512_tT and tg128_tT.
  train    `smolt train ...` on the receipts data; the command line is the template in
           $SMOLT_TRAIN_CMD (default below; placeholders {smolt} {model} {data} {steps} {threads}).
           It must print one JSON line with "tok_s" (and optionally "samples", "loss_first",
           "loss_last", "steps") — the same fields as bench/pytorch/train_bench.py prints.
           -> figure train_receipts_b1.
           Samples are per-step tok/s from the run's metrics.csv with the first --warmup steps left out,
           as bench/pytorch/train_bench.py does; "tok_s" is the whole run's figure (warm-up included).
  seq      `smolt train` on generated records of exactly --seq tokens with the loss on the last --last
           (a long prompt cut in the middle to fit max_len, then an answer of --last tokens counting the
           EOS; at most seq - 9 since a prompt keeps 8 tokens), --batch records per micro-batch
           (batch_tokens = batch * seq), --seq-steps steps; -> figure train_seq512_last{L}_b{B}, one per
           "--seq-runs B:L,..." entry. The words are arbitrary: the cost does not depend on them.
  limits   `smolt bench --limits --prompt-tokens 0 --gen-tokens 0 --threads T --json` per thread count: the
           machine's read bandwidth and arithmetic peaks, and what one token costs the model (bytes a decode
           step streams, operations of a prefill token, body and head parameters) -> records with side
           "machine", figure limits_tT; report.py states every figure as a share of its binding limit.
  receipt  `smolt generate --file PROMPT --schema SCHEMA` on the prompt and schema the llama.cpp side wrote
           (run it after bench/llamacpp_bench.py receipt), greedy, --latency-reps times, wall time
           including the model load, as llama.cpp's figure is -> figure receipt_json_latency_s.
           $SMOLT_RECEIPT_CMD overrides the command (placeholders {smolt} {model} {prompt} {schema}
           {threads} {raw}).

When a subcommand does not exist yet, a record with "skipped" says so and the run goes on.
Peak RSS of each smolt process is taken from wait4's rusage.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.environ.get("SMOLT_BENCH_DIR", os.path.join(HERE, ".work"))
DEFAULT_MODEL = os.path.expanduser("~/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf")
DEFAULT_TRAIN_CMD = ("{smolt} train --model {model} --data {data} --steps {steps} --threads {threads} --bench-json"
                     " --out {out} --set max_len=512 --set batch_tokens=512 --set eval_every=1000000"
                     " --set checkpoint_every=1000000")
DEFAULT_RECEIPT_CMD = ("{smolt} generate --model {model} --file {prompt} --schema {schema} --threads {threads}"
                       " -n 400 --temperature 0 --timings")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(rec):
    print(json.dumps({"side": "smolt", "tool": "smolt", **rec}), flush=True)


def run_rss(cmd):
    log("+ " + " ".join(shlex.quote(c) for c in cmd))
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    # Read output in threads so that wait4 can reap the child itself and return its rusage.
    import threading
    bufs = {"out": [], "err": []}
    ts = [threading.Thread(target=lambda s, k: bufs[k].append(s.read()), args=(p.stdout, "out")),
          threading.Thread(target=lambda s, k: bufs[k].append(s.read()), args=(p.stderr, "err"))]
    for t in ts:
        t.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    for t in ts:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, "".join(bufs["out"]), "".join(bufs["err"]), wall, ru.ru_maxrss / 1024.0


def has_subcommand(smolt, name):
    """True when `smolt NAME --help` succeeds and shows clap's usage line for NAME."""
    r = subprocess.run([smolt, name, "--help"], capture_output=True, text=True)
    return r.returncode == 0 and re.search(rf"Usage:.*\b{name}\b", r.stdout) is not None


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def as_list(v):
    return [float(x) for x in v] if isinstance(v, list) else [float(v)]


def speed(args):
    figs = [f"{p}_t{t}" for t in args.threads for p in ("pp512", "tg128")]
    if not has_subcommand(args.smolt, "bench"):
        msg = "`smolt bench` does not exist yet in this build"
        log(f"smolt_side: {msg}; skipping smolt's speed figures")
        for f in figs:
            emit({"figure": f, "unit": "tok/s", "better": "higher", "skipped": msg})
        return
    for t in args.threads:
        pp, tg, rss = [], [], 0.0
        cmd = [args.smolt, "bench", "--model", args.model, "--prompt-tokens", "512", "--gen-tokens", "128",
               "--threads", str(t), "--json"]
        err_msg = None
        for _ in range(args.reps):
            rc, out, err, wall, peak = run_rss(cmd)
            j = last_json(out)
            if rc != 0 or not j or "prefill_tok_s" not in j or "decode_tok_s" not in j:
                err_msg = f"`smolt bench` failed (exit {rc}): {(err.strip().splitlines() or [''])[-1][:200]}"
                log(err + "\nsmolt_side: " + err_msg)
                break
            pp += as_list(j["prefill_tok_s"])
            tg += as_list(j["decode_tok_s"])
            rss = max(rss, peak)
        cmd_s = " ".join(shlex.quote(c) for c in cmd).replace(args.smolt, "smolt")
        for fig, s in ((f"pp512_t{t}", pp), (f"tg128_t{t}", tg)):
            if err_msg:
                emit({"figure": fig, "unit": "tok/s", "better": "higher", "skipped": err_msg})
            else:
                emit({"figure": fig, "unit": "tok/s", "better": "higher", "samples": s, "threads": t,
                      "peak_rss_mib": round(rss, 1), "command": cmd_s + f" x{args.reps}",
                      "config": f"Q4_K_M, --threads {t}", "versions": {"smolt": args.version}})


def limits(args):
    if not has_subcommand(args.smolt, "bench"):
        log("smolt_side: `smolt bench` does not exist in this build; no machine limits")
        return
    for t in args.threads:
        cmd = [args.smolt, "bench", "--model", args.model, "--limits", "--prompt-tokens", "0", "--gen-tokens", "0",
               "--threads", str(t), "--json"]
        rc, out, err, wall, peak = run_rss(cmd)
        j = last_json(out)
        if rc != 0 or not j or not j.get("limits"):
            log(err[-2000:] + f"\nsmolt_side: `smolt bench --limits` failed (exit {rc}); no machine limits")
            return
        print(json.dumps({"side": "machine", "tool": "smolt bench --limits", "figure": f"limits_t{t}", "threads": t,
                          "limits": j["limits"], "cost": j.get("cost"),
                          "command": " ".join(shlex.quote(c) for c in cmd).replace(args.smolt, "smolt")}), flush=True)


def per_step_samples(run_dir, warmup):
    """Per-step tok/s from metrics.csv (cumulative tokens and seconds), leaving out the warm-up steps."""
    import csv
    path = os.path.join(run_dir, "metrics.csv")
    try:
        rows = list(csv.DictReader(open(path)))
    except OSError:
        return None
    out, prev_tok, prev_s = [], 0.0, 0.0
    for i, r in enumerate(rows):
        tok, el = float(r["tokens"]), float(r["elapsed_s"])
        if i >= warmup and el > prev_s:
            out.append((tok - prev_tok) / (el - prev_s))
        prev_tok, prev_s = tok, el
    return out or None


def train(args):
    fig = "train_receipts_b1"
    if not has_subcommand(args.smolt, "train"):
        msg = "`smolt train` does not exist yet in this build"
        log(f"smolt_side: {msg}; skipping smolt's training figure")
        emit({"figure": fig, "unit": "tok/s", "better": "higher", "skipped": msg})
        return
    if not args.data:
        emit({"figure": fig, "unit": "tok/s", "better": "higher", "skipped": "no --data given"})
        return
    tmpl = os.environ.get("SMOLT_TRAIN_CMD", DEFAULT_TRAIN_CMD)
    import tempfile
    run_dir = tempfile.mkdtemp(prefix="smolt-bench-train-")
    cmd = shlex.split(tmpl.format(smolt=args.smolt, model=args.model, data=args.data, steps=args.steps,
                                  threads=args.threads[0], out=os.path.join(run_dir, "run")))
    rc, out, err, wall, peak = run_rss(cmd)
    j = last_json(out)
    if rc != 0 or not j or "tok_s" not in j:
        msg = (f"`{' '.join(cmd[1:3])} …` gave no JSON line with tok_s (exit {rc}; set SMOLT_TRAIN_CMD to the right "
               f"command line): {(err.strip().splitlines() or [''])[-1][:200]}")
        log(err[-2000:] + "\nsmolt_side: " + msg)
        emit({"figure": fig, "unit": "tok/s", "better": "higher", "skipped": msg})
        return
    rec = {k: v for k, v in j.items() if k not in ("side", "tool", "figure")}
    rec["samples"] = per_step_samples(os.path.join(run_dir, "run"), args.warmup) or [j["tok_s"]]
    rec["warmup_steps"] = args.warmup
    emit({**rec, "figure": fig, "unit": "tok/s", "better": "higher",
          "peak_rss_mib": round(max(peak, float(j.get("peak_rss_mib") or 0)), 1),
          "workload": "receipts", "command": " ".join(shlex.quote(c) for c in cmd).replace(args.smolt, "smolt"),
          "versions": {"smolt": args.version}})


def count_tokens(args, text):
    r = subprocess.run([args.smolt, "tokenize", "--model", args.model, "--no-bos", "--ids", text],
                       capture_output=True, text=True, check=True)
    return len(json.loads(r.stdout))


WORDS = ("the receipt shows a total of items bought at the store on that day with tax and change given "
         "back to customer who paid by card while cashier printed copy for records kept in office").split()


def text_of_tokens(args, n):
    """A text of exactly n tokens (checked with `smolt tokenize`): the most words that stay within n
    (binary search), then single-token fillers."""
    def words(k):
        return " ".join(WORDS[i % len(WORDS)] for i in range(k))
    lo, hi = 0, 4 * n + 8  # words(lo) fits; words(hi) would not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count_tokens(args, words(mid)) <= n else (lo, mid)
    text = words(lo)
    while count_tokens(args, text) < n:
        text += " a"
    if count_tokens(args, text) != n:
        raise RuntimeError(f"could not build a text of exactly {n} tokens")
    return text


def seq(args):
    runs = [tuple(int(x) for x in r.split(":")) for r in args.seq_runs.split(",") if r]
    for batch, last in runs:
        fig = f"train_seq{args.seq}_last{last}_b{batch}"
        if not has_subcommand(args.smolt, "train"):
            emit({"figure": fig, "unit": "tok/s", "better": "higher",
                  "skipped": "`smolt train` does not exist yet in this build"})
            continue
        answer = min(last, args.seq - 9)
        import tempfile
        work = tempfile.mkdtemp(prefix="smolt-bench-seq-")
        try:
            # The answer's EOS is a target too: answer - 1 text tokens.
            completion = " " + text_of_tokens(args, answer - 1)
            prompt = text_of_tokens(args, 2 * args.seq)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            emit({"figure": fig, "unit": "tok/s", "better": "higher", "skipped": f"building the data: {e}"})
            continue
        data = os.path.join(work, "seq.jsonl")
        with open(data, "w") as f:
            for _ in range(batch * args.seq_steps):
                f.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
        cmd = [args.smolt, "train", "--model", args.model, "--data", data, "--steps", str(args.seq_steps),
               "--threads", str(args.threads[0]), "--bench-json", "--out", os.path.join(work, "run"),
               "--set", f"max_len={args.seq}", "--set", f"batch_tokens={batch * args.seq}",
               "--set", "eval_every=1000000", "--set", "checkpoint_every=1000000"]
        rc, out, err, wall, peak = run_rss(cmd)
        j = last_json(out)
        if rc != 0 or not j or "tok_s" not in j:
            msg = f"`smolt train` gave no JSON line with tok_s (exit {rc}): {(err.strip().splitlines() or [''])[-1][:200]}"
            log(err[-2000:] + "\nsmolt_side: " + msg)
            emit({"figure": fig, "unit": "tok/s", "better": "higher", "skipped": msg})
            continue
        per_seq = j.get("tokens", 0) / max(1, j.get("steps", 1) * batch)
        rec = {k: v for k, v in j.items() if k not in ("side", "tool", "figure")}
        emit({**rec, "figure": fig, "unit": "tok/s", "better": "higher",
              "samples": per_step_samples(os.path.join(work, "run"), args.warmup) or [j["tok_s"]],
              "warmup_steps": args.warmup, "workload": "seq512", "tokens_per_sequence": per_seq,
              "target_tokens_per_sequence": answer,
              "peak_rss_mib": round(max(peak, float(j.get("peak_memory_bytes") or 0) / 2**20), 1),
              "command": " ".join(shlex.quote(c) for c in cmd).replace(args.smolt, "smolt").replace(work, "$TMP"),
              "config": f"batch {batch}, sequence {args.seq}, loss on the last {answer}",
              "versions": {"smolt": args.version}})
        shutil.rmtree(work, ignore_errors=True)


def receipt(args):
    tmpl = os.environ.get("SMOLT_RECEIPT_CMD", DEFAULT_RECEIPT_CMD)
    fig = "receipt_json_latency_s"
    raw = args.raw_dir
    prompt, schema = os.path.join(raw, "receipt_prompt.txt"), os.path.join(raw, "receipt_schema.json")
    if not (os.path.exists(prompt) and os.path.exists(schema)):
        emit({"figure": fig, "unit": "s", "better": "lower",
              "skipped": "run the llama.cpp receipt latency first (it writes the shared prompt and schema)"})
        return
    cmd = shlex.split(tmpl.format(smolt=args.smolt, model=args.model, prompt=prompt, schema=schema,
                                  threads=args.threads[0], raw=raw))
    if args.adapter:
        cmd += ["--adapter", args.adapter]
    samples, rss = [], 0.0
    for _ in range(args.latency_reps):
        rc, out, err, wall, peak = run_rss(cmd)
        if rc != 0:
            emit({"figure": fig, "unit": "s", "better": "lower", "skipped": f"exit {rc}: {err.strip()[-200:]}"})
            return
        samples.append(wall)
        rss = max(rss, peak)
    try:
        json.loads(out.strip())
        valid = True
    except ValueError:
        valid = False
    emit({"figure": fig, "unit": "s", "better": "lower", "samples": samples, "peak_rss_mib": round(rss, 1),
          "output": out.strip()[-500:], "valid_json": valid, "timings": err.strip()[-300:],
          "config": f"same prompt and schema file as llama.cpp, greedy, --threads {args.threads[0]}"
                    + (f", adapter {os.path.basename(args.adapter.rstrip('/'))}" if args.adapter else ", base model")
                    + ", wall incl. model load",
          "generated_tokens": generated_tokens(err),
          "command": " ".join(cmd).replace(args.smolt, "smolt").replace(raw, "$RAW"),
          "versions": {"smolt": args.version}})


def generated_tokens(timings):
    """Tokens written, from `smolt generate --timings`' stderr (None where it says nothing)."""
    m = re.search(r"(\d+) output tokens", timings) or re.search(r"generated (\d+) tokens", timings)
    return int(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="*", choices=["limits", "speed", "train", "seq", "receipt"], default=["speed", "train"])
    ap.add_argument("--smolt", default=os.path.join(ROOT, "target", "release", "smolt"))
    ap.add_argument("--model", default=os.environ.get("SMOLT_BENCH_MODEL", DEFAULT_MODEL))
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--latency-reps", type=int, default=3)
    ap.add_argument("--raw-dir", default=os.path.join(WORK, "results", "llamacpp-raw"),
                    help="where the llama.cpp side wrote receipt_prompt.txt and receipt_schema.json")
    ap.add_argument("--adapter", help="receipt: a LoRA adapter (a `smolt train` run) for `smolt generate --adapter`")
    ap.add_argument("--warmup", type=int, default=2, help="leading training steps left out of the samples")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--seq-runs", default="1:128", help="BATCH:LAST,... for the seq workload")
    ap.add_argument("--seq-steps", type=int, default=7)
    args = ap.parse_args()
    args.threads = [int(t) for t in args.threads.split(",") if t]
    if not os.access(args.smolt, os.X_OK):
        msg = f"{args.smolt} not found (build it: cargo build --release)"
        log("smolt_side: " + msg)
        for w in args.what:
            emit({"figure": {"limits": "limits_t2", "speed": "pp512_t2", "train": "train_receipts_b1", "seq": "train_seq512_last128_b1",
                             "receipt": "receipt_json_latency_s"}[w],
                  "skipped": msg})
        return
    v = subprocess.run([args.smolt, "--version"], capture_output=True, text=True)
    args.version = v.stdout.strip() or "?"
    for w in args.what:
        {"limits": limits, "speed": speed, "train": train, "seq": seq, "receipt": receipt}[w](args)


if __name__ == "__main__":
    main()
