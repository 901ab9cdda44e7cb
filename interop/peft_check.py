#!/usr/bin/env python3
"""PEFT reads smolt's adapters and smolt reads PEFT's, with the same logits.

The Hugging Face form of the model is the GGUF dequantized by transformers' GGUF loader (as
the reference fixtures are made), in float32. Two directions:
  1. export: `smolt export RUN --format peft` loaded with PeftModel.from_pretrained, logits
     beside smolt's f32 path with the run directory as adapter;
  2. import: a LoRA trained here with PyTorch + PEFT (a few AdamW steps on the prompts; r 8,
     alpha 16, rsLoRA, q/v/down only, saved in bfloat16) loaded by smolt with --adapter.
Reported: max |Δlogit| with the adapter, without it (the engines' own distance), and between
the adapter's effects (logits with minus without), which isolates the adapter's arithmetic.

  python interop/peft_check.py --gguf B.gguf --peft EXPORTED_DIR --run RUN_DIR \
      --records valid.jsonl [--n 3] [--example target/release/examples/logits]
"""
import argparse, json, os, subprocess, tempfile, tomllib

import numpy as np
import torch
from llama_cpp import Llama
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

LAST = 8


def smolt_logits(example, model, ids, adapter=None):
    with tempfile.TemporaryDirectory() as d:
        idf, out = os.path.join(d, "ids.json"), os.path.join(d, "out.f32")
        json.dump(ids, open(idf, "w"))
        cmd = [example, model, idf, out, "--last", str(LAST), "--f32"]
        if adapter:
            cmd += ["--adapter", adapter]
        subprocess.run(cmd, check=True)
        return np.fromfile(out, dtype="<f4").astype(np.float64)


def hf_logits(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0, -LAST:].double().numpy().reshape(-1)
    return out


def load_hf(gguf):
    m = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(gguf)),
                                             gguf_file=os.path.basename(gguf),
                                             torch_dtype=torch.float32)
    return m.eval()


def compare(name, rows):
    d = lambda x, y: float(np.abs(x - y).max())
    print(f"| {name} | " + " | ".join(
        f"{d(r['hf_ad'], r['sm_ad']):.2e} / {d(r['hf'], r['sm']):.2e} / "
        f"{d(r['hf_ad'] - r['hf'], r['sm_ad'] - r['sm']):.2e} (effect {d(r['sm_ad'], r['sm']):.2f})"
        for r in rows) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--peft", required=True, help="smolt export --format peft output")
    ap.add_argument("--run", required=True)
    ap.add_argument("--records", required=True)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--max-input", type=int, default=400, help="characters of each input kept")
    ap.add_argument("--example", default="target/release/examples/logits")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    template = tomllib.load(open(os.path.join(a.run, "config.toml"), "rb"))["template"]
    recs = [json.loads(l) for l in open(a.records) if l.strip()][: a.n]
    tok = Llama(model_path=a.gguf, n_ctx=64, vocab_only=True, verbose=False)
    prompts = [tok.tokenize(template.replace("{input}", r["input"][: a.max_input]).encode(),
                            add_bos=True, special=True) for r in recs]

    base = load_hf(a.gguf)
    plain = [hf_logits(base, ids) for ids in prompts]
    smolt_plain = [smolt_logits(a.example, a.gguf, ids) for ids in prompts]

    # 1. smolt → PEFT
    peft = PeftModel.from_pretrained(base, a.peft).eval()
    rows = [dict(hf=plain[i], sm=smolt_plain[i], hf_ad=hf_logits(peft, ids),
                 sm_ad=smolt_logits(a.example, a.gguf, ids, a.run)) for i, ids in enumerate(prompts)]
    print("| direction | per prompt: with adapter / without / between the adapter's effects |")
    print("|---|---|")
    compare("smolt export → PEFT", rows)
    base = peft.unload()

    # 2. PEFT (trained with PyTorch) → smolt
    cfg = LoraConfig(r=8, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"],
                     lora_dropout=0.05, task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    for step in range(4):
        for ids in prompts:
            x = torch.tensor([ids])
            loss = model(x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    with tempfile.TemporaryDirectory() as d:
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.data = p.data.to(torch.bfloat16).to(torch.float32)  # what smolt will read
        model.save_pretrained(d)
        # Saved in bfloat16, as half-precision training runs save.
        from safetensors.torch import load_file, save_file
        f = os.path.join(d, "adapter_model.safetensors")
        save_file({k: v.to(torch.bfloat16) for k, v in load_file(f).items()}, f)
        rows = [dict(hf=plain[i], sm=smolt_plain[i], hf_ad=hf_logits(model, ids),
                     sm_ad=smolt_logits(a.example, a.gguf, ids, d)) for i, ids in enumerate(prompts)]
    compare("PEFT (PyTorch-trained, bf16, rsLoRA, q/v/down) → smolt", rows)
    print(f"\nprompts: {[len(p) for p in prompts]} tokens; max |Δlogit| over the last {LAST} positions, float32 on both sides")


if __name__ == "__main__":
    main()
