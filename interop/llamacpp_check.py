#!/usr/bin/env python3
"""llama.cpp loads smolt's exports and computes what smolt computes.

For a base GGUF, a GGUF LoRA exported by `smolt export --format gguf-lora` and the merged GGUF
of `--format merged-gguf`, on real prompts (the task's template around receipts of our own
validation split): llama.cpp's logits (via llama-cpp-python, built from source) beside
smolt's (`cargo run --release --example logits`) on the same token ids,
  base         : llama.cpp(base)          vs smolt(base)            -- the yardstick
  lora         : llama.cpp(base + lora)   vs smolt(base + adapter)
  merged       : llama.cpp(merged)        vs smolt(merged)
  lora effect  : smolt(base + adapter)    vs smolt(base)            -- how much the adapter moves
and the greedy answers of both engines with the adapter. Prints a Markdown table.

  python interop/llamacpp_check.py --base B.gguf --lora L.gguf --merged M.gguf \
      --run RUN_DIR --records valid.jsonl [--n 3] [--smolt target/release/smolt]
"""
import argparse, json, os, subprocess, sys, tempfile, tomllib

import numpy as np
from llama_cpp import Llama

LAST = 8  # positions compared per prompt (the answer starts after the last one)


def smolt_logits(example, model, ids, adapter=None):
    with tempfile.TemporaryDirectory() as d:
        idf, out = os.path.join(d, "ids.json"), os.path.join(d, "out.f32")
        json.dump(ids, open(idf, "w"))
        cmd = [example, model, idf, out, "--last", str(LAST)]
        if adapter:
            cmd += ["--adapter", adapter]
        subprocess.run(cmd, check=True)
        return np.fromfile(out, dtype="<f4")


def llama_logits(model, ids, lora=None):
    llm = Llama(model_path=model, lora_path=lora, n_ctx=len(ids) + 8, n_batch=len(ids) + 8,
                n_ubatch=len(ids) + 8, logits_all=True, n_threads=2, verbose=False)
    llm.eval(ids)
    out = np.array(llm.scores[len(ids) - LAST:len(ids)], dtype=np.float32).reshape(-1)
    del llm
    return out


def llama_greedy(model, prompt, lora, n):
    llm = Llama(model_path=model, lora_path=lora, n_ctx=2048, n_threads=2, verbose=False)
    r = llm.create_completion(prompt, max_tokens=n, temperature=0.0, top_k=1)
    return r["choices"][0]["text"]


def smolt_greedy(smolt, model, prompt, adapter, n):
    cmd = [smolt, "generate", "--model", model, "--temperature", "0", "-n", str(n), prompt]
    if adapter:
        cmd += ["--adapter", adapter]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--lora", required=True)
    ap.add_argument("--merged", required=True)
    ap.add_argument("--run", required=True, help="the smolt run directory (adapter, template)")
    ap.add_argument("--records", required=True, help="JSONL with an `input` field")
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--smolt", default="target/release/smolt")
    ap.add_argument("--example", default="target/release/examples/logits")
    a = ap.parse_args()

    template = tomllib.load(open(os.path.join(a.run, "config.toml"), "rb"))["template"]
    recs = [json.loads(l) for l in open(a.records) if l.strip()][: a.n]
    tok = Llama(model_path=a.base, n_ctx=64, vocab_only=True, verbose=False)
    rows, same = [], 0
    for i, r in enumerate(recs):
        prompt = template.replace("{input}", r["input"])
        ids = tok.tokenize(prompt.encode(), add_bos=True, special=True)
        sb = smolt_logits(a.example, a.base, ids)
        sl = smolt_logits(a.example, a.base, ids, a.run)
        sg = smolt_logits(a.example, a.base, ids, a.lora)
        sm = smolt_logits(a.example, a.merged, ids)
        lb = llama_logits(a.base, ids)
        ll = llama_logits(a.base, ids, a.lora)
        lm = llama_logits(a.merged, ids)
        v = len(sb) // LAST
        top = lambda x: x.reshape(LAST, v).argmax(1)
        d = lambda x, y: float(np.abs(x - y).max())

        def dlp(x, y):
            # Log-probabilities of the reference's top 5 tokens at each position: what decoding sees.
            x, y = x.reshape(LAST, v).astype(np.float64), y.reshape(LAST, v).astype(np.float64)
            lx = x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) - x.max(1, keepdims=True)
            ly = y - np.log(np.exp(y - y.max(1, keepdims=True)).sum(1, keepdims=True)) - y.max(1, keepdims=True)
            top5 = np.argsort(-y, 1)[:, :5]
            return float(np.abs(np.take_along_axis(lx, top5, 1) - np.take_along_axis(ly, top5, 1)).max())
        row = dict(prompt=i, tokens=len(ids), base=d(lb, sb), lora=d(ll, sl), merged=d(lm, sm),
                   merged_vs_lora=d(sm, sl), effect=d(sl, sb), gguf_vs_run=d(sg, sl),
                   lp_base=dlp(lb, sb), lp_lora=dlp(ll, sl), lp_merged=dlp(lm, sm),
                   argmax_lora=int((top(ll) == top(sl)).sum()), argmax_merged=int((top(lm) == top(sm)).sum()))
        g_s = smolt_greedy(a.smolt, a.base, prompt, a.run, a.max_tokens).strip()
        g_l = llama_greedy(a.base, prompt, a.lora, a.max_tokens).strip()
        row["greedy_equal"] = g_s == g_l
        same += g_s == g_l
        if g_s != g_l:
            print(f"prompt {i} greedy differs:\n  smolt: {g_s!r}\n  llama: {g_l!r}", file=sys.stderr)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print("| prompt | tokens | base: llama.cpp vs smolt | lora: llama.cpp vs smolt | merged: llama.cpp vs smolt | smolt merged vs unmerged | adapter effect | argmax agree (lora, merged) | greedy answer equal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['prompt']} | {r['tokens']} | {r['base']:.3f} ({r['lp_base']:.3f}) | {r['lora']:.3f} ({r['lp_lora']:.3f}) | {r['merged']:.3f} ({r['lp_merged']:.3f}) | "
              f"{r['merged_vs_lora']:.3f} | {r['effect']:.3f} | {r['argmax_lora']}/{LAST}, {r['argmax_merged']}/{LAST} | {r['greedy_equal']} |")
    print(f"\nmax |Δlogit| over the last {LAST} positions of each prompt (in brackets: max |Δ log-probability| of llama.cpp's top 5 tokens); greedy answers equal on {same}/{len(rows)}; "
          f"smolt with the GGUF LoRA vs the run directory: {max(r['gguf_vs_run'] for r in rows):.2e}")


if __name__ == "__main__":
    main()
