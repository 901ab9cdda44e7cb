#!/usr/bin/env python3
"""Runs llama.cpp's own tokenizer test cases (models/ggml-vocab-*.gguf with their .inp/.out
files, shipped in the llama.cpp sources that bench/build_llamacpp.sh unpacks) through
`smolt tokenize` and reports, per vocabulary, how many cases give llama.cpp's ids.

    python3 scripts/llamacpp_vocab_tests.py [--smolt target/release/smolt]
        [--models bench/.work/llama.cpp/models] [VOCAB ...]

VOCAB names a vocabulary (`llama-bpe`, `qwen2`, ...); default: every ggml-vocab-*.gguf that has
.inp/.out files. The .out files hold ids without BOS and without special-token parsing
(llama.cpp's test-tokenizer-0), so smolt runs with --no-bos --no-parse-special. A vocabulary
smolt cannot load is reported with smolt's message, not counted as a mismatch. Exit status 1 if
any loaded vocabulary has a mismatch.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

SEP = "\n__ggml_vocab_test__\n"


def cases(inp, out):
    texts = open(inp, encoding="utf-8").read().split(SEP)
    ids = open(out, encoding="utf-8").read().split("\n")
    # test-tokenizer-0 writes one line of ids per text; the last text ends the file.
    if texts and texts[-1].endswith("\n__ggml_vocab_test__"):
        texts[-1] = texts[-1][: -len("\n__ggml_vocab_test__")]
    ids = [[int(t) for t in line.split()] for line in ids[: len(texts)]]
    return list(zip(texts, ids))


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smolt", default=os.path.join(here, "target/release/smolt"))
    ap.add_argument("--models", default=os.path.join(here, "bench/.work/llama.cpp/models"))
    ap.add_argument("vocab", nargs="*")
    a = ap.parse_args()
    names = a.vocab or sorted(
        os.path.basename(p)[len("ggml-vocab-"):-len(".gguf.inp")]
        for p in glob.glob(os.path.join(a.models, "ggml-vocab-*.gguf.inp"))
    )
    if not names:
        sys.exit(f"no ggml-vocab-*.gguf.inp in {a.models}: build llama.cpp with bench/build_llamacpp.sh first")
    bad = False
    for name in names:
        gguf = os.path.join(a.models, f"ggml-vocab-{name}.gguf")
        pairs = cases(gguf + ".inp", gguf + ".out")
        ok, first_bad, error = 0, None, None
        for text, want in pairs:
            r = subprocess.run(
                [a.smolt, "tokenize", "--model", gguf, "--ids", "--no-bos", "--no-parse-special", "-"],
                input=text.encode("utf-8"), capture_output=True)
            if r.returncode != 0:
                error = r.stderr.decode("utf-8", "replace").strip().splitlines()[-1]
                break
            got = json.loads(r.stdout)
            if got == want:
                ok += 1
            elif first_bad is None:
                first_bad = (text, want, got)
        if error:
            print(f"{name:16} not loaded: {error}")
            continue
        print(f"{name:16} {ok}/{len(pairs)} cases equal to llama.cpp")
        if first_bad:
            bad = True
            t, w, g = first_bad
            print(f"  first difference: {t!r}\n    llama.cpp {w}\n    smolt     {g}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
