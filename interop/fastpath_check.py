#!/usr/bin/env python3
"""How far smolt's fast path and llama.cpp each are from the PyTorch reference, side by side.

Reads a logits fixture (crates/model/tests/fixtures/logits_*.json: HF transformers float32 on the
dequantized GGUF: top-5 logits and logsumexp at every position of each prompt), runs the same ids
through llama.cpp (llama-cpp-python) and through smolt (`--example logits`, fast and f32), and
prints, per prompt, the largest |Δ| over the reference's top-5 logits and the logsumexp at every
position, and how many positions keep the reference's argmax.

  python interop/fastpath_check.py --gguf MODEL.gguf --fixture crates/model/tests/fixtures/logits_qwen2.json
"""
import argparse, json, os, subprocess, tempfile

import numpy as np
from llama_cpp import Llama


def smolt(example, gguf, ids, f32):
    with tempfile.TemporaryDirectory() as d:
        idf, out = os.path.join(d, "ids.json"), os.path.join(d, "out.f32")
        json.dump(ids, open(idf, "w"))
        cmd = [example, gguf, idf, out, "--last", str(len(ids))] + (["--f32"] if f32 else [])
        subprocess.run(cmd, check=True)
        return np.fromfile(out, dtype="<f4").reshape(len(ids), -1).astype(np.float64)


def llama(gguf, ids):
    n = len(ids)
    llm = Llama(model_path=gguf, n_ctx=n + 8, n_batch=n + 8, n_ubatch=n + 8, logits_all=True,
                n_threads=2, verbose=False)
    llm.eval(ids)
    out = np.array(llm.scores[:n], dtype=np.float64)
    del llm
    return out


def distance(logits, positions):
    worst, agree = 0.0, 0
    for row, ref in zip(logits, positions):
        m = row.max()
        lse = m + np.log(np.exp(row - m).sum())
        worst = max(worst, abs(lse - ref["lse"]), *(abs(row[i] - v) for i, v in ref["top5"]))
        agree += int(row.argmax()) == ref["argmax"]
    return worst, agree


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--example", default="target/release/examples/logits")
    a = ap.parse_args()
    fx = json.load(open(a.fixture))
    print("| prompt | tokens | llama.cpp vs HF | smolt fast vs HF | smolt f32 vs HF | argmax kept (llama.cpp / fast / f32) |")
    print("|---|---|---|---|---|---|")
    for name, p in fx["prompts"].items():
        ids, pos = p["ids"], p["positions"]
        ll, fa, f3 = llama(a.gguf, ids), smolt(a.example, a.gguf, ids, False), smolt(a.example, a.gguf, ids, True)
        (dl, al), (df, af), (d3, a3) = distance(ll, pos), distance(fa, pos), distance(f3, pos)
        print(f"| {name} ({p.get('description', '')}) | {len(ids)} | {dl:.3f} | {df:.3f} | {d3:.4f} | {al} / {af} / {a3} of {len(pos)} |")
    print("\nmax |Δ| over the reference's top-5 logits and logsumexp at every position")


if __name__ == "__main__":
    main()
