#!/usr/bin/env python3
"""LoRA training throughput and peak memory of the PyTorch peer (transformers + PEFT, CPU, f32).

--autocast bf16 runs the forward under `torch.autocast("cpu", dtype=torch.bfloat16)`, as users do on
CPUs with bf16 hardware (AVX-512 BF16, AMX): weights stay f32, the matrix products run in bf16 through
oneDNN. Its figures carry the suffix `_bf16ac` and the tool `pytorch+peft bf16 autocast`.

The model is read from the same GGUF file smolt trains on: transformers dequantizes it to f32
(`from_pretrained(dir, gguf_file=...)`); the converted model and tokenizer are cached as
safetensors under bench/.work/hf-models/ so later runs skip the conversion. The conversion runs in
a child process so that its memory does not count in the benchmark's peak RSS.

LoRA: r=16, alpha=32, dropout 0, q/k/v/o/gate/up/down projections, AdamW lr 2e-4 (constant),
batch 1 unless --batch. One step = forward + backward + AdamW step + zero_grad.

Workloads
  receipts  SROIE JSONL records {"input": OCR text, "output": {...}} formatted as
            <bos>Receipt OCR:\\n{input}\\n\\nJSON:{json.dumps(output, ensure_ascii=False)}<eos>
            (<bos> only where the GGUF adds one, as smolt does: Gemma yes, Qwen 2.5 no; <eos> is the
            GGUF's end-of-generation token)
            with the OCR text cut to 380 tokens; prompt and answer are tokenized separately and
            concatenated (as smolt does); loss on the answer JSON + EOS only; records in file order.
            tok/s = all tokens fed forward (prompt + answer) / time.
  seq512    fixed random token ids (seed 0), sequence 512, loss on the last --last tokens;
            tok/s = batch * 512 / step time.

Prints one JSON line per run on stdout (progress goes to stderr). Steps before --warmup are run
but not timed into the figures.
"""
import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.environ.get("SMOLT_BENCH_DIR", os.path.join(os.path.dirname(HERE), ".work"))
DEFAULT_MODEL = os.path.expanduser("~/.cache/smolt/models/gemma-3-270m-q4_k_m.gguf")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT_TEMPLATE = "Receipt OCR:\n{input}\n\nJSON:"
INPUT_MAX_TOKENS = 380


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def die(msg):
    print(f"train_bench.py: {msg}", file=sys.stderr)
    sys.exit(2)


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cache_dir_for(gguf_path):
    st = os.stat(gguf_path)
    key = hashlib.sha256(f"{os.path.basename(gguf_path)}:{st.st_size}".encode()).hexdigest()[:12]
    stem = os.path.splitext(os.path.basename(gguf_path))[0]
    return os.path.join(WORK, "hf-models", f"{stem}-{key}")


def convert(gguf_path, out_dir):
    """GGUF → f32 transformers model + tokenizer, saved as safetensors (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = os.path.split(os.path.abspath(gguf_path))
    tmp = out_dir + ".tmp"
    log(f"converting {gguf_path} to f32 safetensors in {out_dir} (once)")
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    # The weights are plain f32 tensors now; drop the GGUF "quantizer" marker so that
    # save_pretrained accepts the model and the cached copy loads as an ordinary f32 model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    os.makedirs(tmp, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    with open(os.path.join(tmp, "SOURCE"), "w") as fh:
        fh.write(os.path.abspath(gguf_path) + "\n")
    if os.path.exists(out_dir):
        import shutil
        shutil.rmtree(out_dir)
    os.rename(tmp, out_dir)


def ensure_converted(gguf_path):
    out = cache_dir_for(gguf_path)
    if os.path.exists(os.path.join(out, "config.json")):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--convert-only", "--model", gguf_path])
    if r.returncode != 0 or not os.path.exists(os.path.join(out, "config.json")):
        die(f"converting {gguf_path} with transformers failed (exit {r.returncode}); see the messages above")
    return out


def special_ids(gguf_path):
    """(BOS id or None, EOS id) as smolt's tokenizer reads them from the GGUF: BOS only where
    `tokenizer.ggml.add_bos_token` is true (Gemma), none where it is false (Qwen 2.5); the
    answer ends with `tokenizer.ggml.eos_token_id`."""
    from gguf import GGUFReader

    r = GGUFReader(gguf_path)

    def scalar(key):
        f = r.fields.get(key)
        return None if f is None else f.parts[f.data[0]][0].item()

    eos = scalar("tokenizer.ggml.eos_token_id")
    if eos is None:
        die(f"{gguf_path}: no tokenizer.ggml.eos_token_id")
    add_bos = scalar("tokenizer.ggml.add_bos_token")
    bos = scalar("tokenizer.ggml.bos_token_id")
    return (bos if add_bos and bos is not None else None), int(eos)


def receipts_examples(tok, path, n_needed, specials):
    """Token ids and labels (-100 = no loss) for the first records of `path`, in file order."""
    bos, eos = specials
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                text, answer = rec["input"], rec["output"]
            except (ValueError, KeyError, TypeError) as e:
                die(f"{path}:{lineno}: not a {{\"input\", \"output\"}} record ({e})")
            cut = tok.encode(text, add_special_tokens=False)[:INPUT_MAX_TOKENS]
            text = tok.decode(cut)
            answer_text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
            p = ([bos] if bos is not None else []) + tok.encode(
                PROMPT_TEMPLATE.format(input=text), add_special_tokens=False)
            a = tok.encode(answer_text, add_special_tokens=False) + [eos]
            out.append((p + a, [-100] * len(p) + a))
            if len(out) >= n_needed:
                break
    if not out:
        die(f"{path}: no records")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["receipts", "seq512"], default="seq512")
    ap.add_argument("--model", default=os.environ.get("SMOLT_BENCH_MODEL", DEFAULT_MODEL), help="GGUF file")
    ap.add_argument("--data", help="receipts JSONL (required for --workload receipts)")
    ap.add_argument("--steps", type=int, default=None, help="steps incl. warm-up (default: 30 receipts, 7 seq512)")
    ap.add_argument("--warmup", type=int, default=2, help="leading steps not timed (default 2)")
    ap.add_argument("--batch", type=int, default=1, help="seq512 only: sequences per step")
    ap.add_argument("--seq", type=int, default=512, help="seq512 only: sequence length")
    ap.add_argument("--last", type=int, default=128, help="seq512 only: loss on the last N tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: forward under torch.autocast(cpu, bfloat16) (default none: f32)")
    ap.add_argument("--convert-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if not os.path.isfile(args.model):
        die(f"model {args.model} not found (smolt caches it with `smolt fetch`; or pass --model PATH.gguf)")
    if args.convert_only:
        convert(args.model, cache_dir_for(args.model))
        return
    if args.workload == "receipts" and not args.data:
        die("--workload receipts needs --data PATH.jsonl (SROIE records)")
    if args.data and not os.path.isfile(args.data):
        die(f"data file {args.data} not found")
    steps = args.steps if args.steps is not None else (30 if args.workload == "receipts" else 7)
    if steps <= args.warmup:
        die(f"--steps {steps} must exceed --warmup {args.warmup}")
    if args.workload == "seq512" and not (1 <= args.last <= args.seq):
        die(f"--last must be in 1..{args.seq}")

    model_dir = ensure_converted(args.model)

    import torch
    import transformers
    import peft
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=args.attn)
    model.config.use_cache = False
    lcfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    model.train()
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    rss_loaded = peak_rss_mib()

    if args.workload == "receipts":
        exs = receipts_examples(tok, args.data, steps, special_ids(args.model))
        batches = []
        for i in range(steps):
            ids, labels = exs[i % len(exs)]
            batches.append((torch.tensor([ids]), torch.tensor([labels])))
        config = "batch 1, SROIE receipts in file order, OCR cut to 380 tokens, loss on answer JSON + EOS"
        figure = "train_receipts_b1"
    else:
        g = torch.Generator().manual_seed(0)
        vocab = model.get_input_embeddings().weight.shape[0]
        ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g)
        labels = ids.clone()
        labels[:, : args.seq - args.last] = -100
        batches = [(ids, labels)] * steps
        config = f"batch {args.batch} x {args.seq} random ids (seed 0), loss on last {args.last}"
        figure = f"train_seq{args.seq}_last{args.last}_b{args.batch}"

    autocast = args.autocast == "bf16"
    if autocast:
        config += "; forward under torch.autocast(cpu, bfloat16)"
        figure += "_bf16ac"
    def forward_context():
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()

    losses, times, tokens = [], [], []
    for step, (ids, labels) in enumerate(batches):
        t0 = time.perf_counter()
        with forward_context():
            out = model(input_ids=ids, labels=labels, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        losses.append(float(out.loss.detach()))
        times.append(dt)
        tokens.append(int(ids.numel()))
        log(f"step {step:3d}  tokens {ids.numel():5d}  loss {losses[-1]:.4f}  {dt:7.3f} s  "
            f"{ids.numel() / dt:7.1f} tok/s{'  (warm-up)' if step < args.warmup else ''}")

    t_meas, n_meas = times[args.warmup:], tokens[args.warmup:]
    per_step = [n / t for n, t in zip(n_meas, t_meas)]
    result = {
        "side": "peer",
        "tool": "pytorch+peft bf16 autocast" if autocast else "pytorch+peft",
        "figure": figure,
        "workload": args.workload,
        "config": config,
        "unit": "tok/s",
        "better": "higher",
        "steps": steps,
        "warmup_steps": args.warmup,
        "measured_steps": len(t_meas),
        "tok_s": sum(n_meas) / sum(t_meas),
        "samples": per_step,
        "tok_s_min": min(per_step),
        "tok_s_median": statistics.median(per_step),
        "tok_s_max": max(per_step),
        "tokens_measured": sum(n_meas),
        "seconds_measured": sum(t_meas),
        "step_s": t_meas,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "losses": losses,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_after_load_mib": round(rss_loaded, 1),
        "trainable_params": n_trainable,
        "threads": args.threads,
        "attn": args.attn,
        "autocast": args.autocast,
        "model": os.path.abspath(args.model),
        "data": os.path.abspath(args.data) if args.data else None,
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targets": TARGETS, "optimizer": "AdamW", "lr": args.lr},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "gguf": importlib.metadata.version("gguf"),
        },
        "command": " ".join(["train_bench.py"] + sys.argv[1:]),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
