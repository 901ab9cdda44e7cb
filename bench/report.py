#!/usr/bin/env python3
"""Markdown report from benchmark JSON lines (smolt's side and the peers').

  report.py [--results-dir bench/results [--index BENCHMARKS.md]] [--out FILE] [--command "bench/run.sh ..."]
            [--commit TEXT] [--when "YYYY-MM-DD HH:MM"] [--note TEXT] RESULTS.jsonl...

Each input line is one record:
  {"side": "smolt" | "peer", "tool": str, "figure": str, "samples": [numbers],
   "unit": "tok/s" | "s" | ..., "better": "higher" | "lower",
   optional: "config", "peak_rss_mib", "command", "versions": {...}, "skipped": reason}
Records with the same (side, figure) are pooled; the table gives min / median / max of the pooled
samples, and the ratio of the medians oriented so that > 1 means smolt is better
(smolt/peer for higher-is-better figures, peer/smolt for lower-is-better ones).
Lines that are not JSON objects are ignored.

Where the section goes: with --results-dir DIR it is written to a new file DIR/YYYY-MM-DD-HHMM.md
(UTC time of the section's heading; never overwrites: -2, -3, ... if taken), and with --index FILE
(BENCHMARKS.md) a row for it (date, machine, commit, headline ratios, link) is inserted into that
file's index of runs, just below the header of the first table after the "<!-- runs-index" marker
line; the figures to copy into BENCHMARKS.md's hand-kept "Current figures" tables are printed to
stderr. With --out FILE the section is appended to FILE instead (ad-hoc runs); with neither it is
printed.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

HEADLINE = [("pp", ("pp512_t2", "pp512_t1")), ("tg", ("tg128_t2", "tg128_t1")),
            ("rcpt", ("train_receipts_b1",)), ("rcpt-bf16ac", ("train_receipts_b1_bf16ac",)),
            ("all", ("train_seq512_last512_b1",)),
            ("lat", ("receipt_json_latency_s",))]
INDEX_MARKER = "<!-- runs-index"
# Figure suffix of the PyTorch runs under bf16 autocast (bench/pytorch/train_bench.py --autocast bf16).
AUTOCAST = "_bf16ac"

ORDER = [
    ("pp512_t2", "prompt processing pp512, 2 threads"),
    ("tg128_t2", "generation tg128, 2 threads"),
    ("pp512_t1", "prompt processing pp512, 1 thread"),
    ("tg128_t1", "generation tg128, 1 thread"),
    ("train_receipts_b1", "LoRA training, SROIE receipts, batch 1"),
    ("train_seq512_last128_b1", "LoRA training, 1 x 512, loss on last 128"),
    ("train_seq512_last512_b1", "LoRA training, 1 x 512, loss on all 512"),
    ("train_seq512_last128_b4", "LoRA training, 4 x 512, loss on last 128"),
    ("train_seq512_last512_b4", "LoRA training, 4 x 512, loss on all 512"),
    ("train_receipts_b1_bf16ac", "LoRA training, SROIE receipts, batch 1 — vs PyTorch bf16 autocast"),
    ("train_seq512_last128_b1_bf16ac", "LoRA training, 1 x 512, loss on last 128 — vs PyTorch bf16 autocast"),
    ("train_seq512_last512_b1_bf16ac", "LoRA training, 1 x 512, loss on all 512 — vs PyTorch bf16 autocast"),
    ("train_seq512_last128_b4_bf16ac", "LoRA training, 4 x 512, loss on last 128 — vs PyTorch bf16 autocast"),
    ("train_seq512_last512_b4_bf16ac", "LoRA training, 4 x 512, loss on all 512 — vs PyTorch bf16 autocast"),
    ("receipt_json_latency_s", "receipt -> JSON, schema-constrained, greedy (wall, incl. load)"),
    ("receipt_json_compute_s", "receipt -> JSON, schema-constrained, greedy (prompt + generation)"),
]
FLAGS_OF_INTEREST = ["avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
                     "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile"]


def load(paths):
    recs = []
    for p in paths:
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if isinstance(r, dict) and "figure" in r and "side" in r:
                    recs.append(r)
    return recs


def fmt(x, unit):
    if x is None:
        return ""
    if unit == "s":
        return f"{x:.3f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def mmm(samples, unit):
    if not samples:
        return "—"
    return f"{fmt(min(samples), unit)} / **{fmt(statistics.median(samples), unit)}** / {fmt(max(samples), unit)} (n={len(samples)})"


def machine():
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    except OSError:
        pass
    flags = set(info.get("Flags", "").split())
    if not flags and os.path.exists("/proc/cpuinfo"):
        m = re.search(r"^flags\s*:\s*(.*)$", open("/proc/cpuinfo").read(), re.M)
        flags = set(m.group(1).split()) if m else set()
    mem = ""
    try:
        m = re.search(r"MemTotal:\s*(\d+) kB", open("/proc/meminfo").read())
        mem = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    cpus = info.get("CPU(s)", str(os.cpu_count()))
    cores = info.get("Core(s) per socket", "?")
    sockets = info.get("Socket(s)", "?")
    tpc = info.get("Thread(s) per core", "?")
    return {
        "model": info.get("Model name", platform.processor() or "?"),
        "cpus": f"{cpus} logical CPUs ({sockets} socket(s) x {cores} core(s) x {tpc} thread(s))",
        "flags": ", ".join(f for f in FLAGS_OF_INTEREST if f in flags) or "none of " + ", ".join(FLAGS_OF_INTEREST),
        "hypervisor": info.get("Hypervisor vendor", ""),
        "caches": ", ".join(f"{k} {info[k]}" for k in ("L1d cache", "L2 cache", "L3 cache") if k in info),
        "memory": mem,
        "kernel": platform.release(),
    }


def versions(recs):
    seen = {}
    for r in recs:
        for k, v in (r.get("versions") or {}).items():
            if v is None or k == "cpu_info":
                continue
            seen.setdefault(k, set()).add(str(v))
    return "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in sorted(seen.items()))


def table(recs):
    groups = {}
    for r in recs:
        if r.get("side") == "machine":
            continue
        g = groups.setdefault(r["figure"], {"smolt": [], "peer": [], "recs": []})
        g["recs"].append(r)
        if not r.get("skipped"):
            g["smolt" if r["side"] == "smolt" else "peer"].extend(float(x) for x in r.get("samples") or [])
    # The PyTorch bf16 autocast runs (figure + AUTOCAST) are set against smolt's run of the same
    # workload: smolt has one training arithmetic, the peer two.
    for k, g in groups.items():
        base = groups.get(k[: -len(AUTOCAST)]) if k.endswith(AUTOCAST) else None
        if base is not None:
            g["smolt"] = base["smolt"]
            g["smolt_recs"] = [r for r in base["recs"] if r["side"] == "smolt"]
    names = dict(ORDER)
    keys = [k for k, _ in ORDER if k in groups] + sorted(k for k in groups if k not in names)
    lines = [
        "| figure | unit | smolt min / **median** / max | peer min / **median** / max | smolt ÷ peer (>1: smolt better) | peak RSS smolt / peer, MiB | peer |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for k in keys:
        g = groups[k]
        unit = next((r.get("unit") for r in g["recs"] if r.get("unit")), "")
        better = next((r.get("better") for r in g["recs"] if r.get("better")), "higher")
        ratio = ""
        if g["smolt"] and g["peer"]:
            s, p = statistics.median(g["smolt"]), statistics.median(g["peer"])
            if s > 0 and p > 0:
                ratio = f"{(s / p if better == 'higher' else p / s):.2f}×"
        rss = {}
        for side in ("smolt", "peer"):
            recs = g["recs"] + g.get("smolt_recs", [])
            vals = [r["peak_rss_mib"] for r in recs if r["side"] == side and r.get("peak_rss_mib")]
            rss[side] = f"{max(vals):.0f}" if vals else "—"
        peer_tools = sorted({r.get("tool", "?") for r in g["recs"] if r["side"] != "smolt"})
        lines.append(f"| {names.get(k, k)} | {unit} | {mmm(g['smolt'], unit)} | {mmm(g['peer'], unit)} | {ratio} | "
                     f"{rss['smolt']} / {rss['peer']} | {', '.join(peer_tools) or '—'} |")
        for r in g["recs"]:
            if r.get("skipped"):
                notes.append(f"- {names.get(k, k)} ({r['side']}): not measured — {r['skipped']}")
    return lines, notes, keys, groups


def train_flops_per_token(rec, cost):
    """Multiply-adds ×2 of one training token with frozen weights: the body forward and its input
    gradient (4 × body parameters), and the same for the head on the tokens with a loss (LoRA's thin
    products and attention are left out: a few per cent here)."""
    if rec.get("tokens_per_sequence"):
        frac = rec.get("target_tokens_per_sequence", 0) / rec["tokens_per_sequence"]
    elif rec.get("tokens"):
        frac = rec.get("target_tokens", 0) / rec["tokens"]
    else:
        return None
    return 4 * cost["body_params"] + 4 * cost["head_params"] * frac


def limits_section(recs, keys, groups):
    mach = {r["threads"]: r for r in recs if r.get("side") == "machine" and r.get("limits")}
    if not mach:
        return []
    opt = lambda v: f"{v:.0f}" if v else "—"
    out = ["Machine limits (`smolt bench --limits`: tight loops on the same threads, best of 3; GB = 10⁹ bytes):", "",
           "| threads | read GB/s | f32 FMA GFLOP/s | int8 VNNI GOP/s | bf16 dot GFLOP/s | AMX bf16 GFLOP/s |",
           "|---|---|---|---|---|---|"]
    for t in sorted(mach, reverse=True):
        l = mach[t]["limits"]
        out.append(f"| {t} | {l['read_gb_per_s']:.1f} | {opt(l['f32_gflop_per_s'])} | {opt(l['int8_gop_per_s'])} | "
                   f"{opt(l['bf16_gflop_per_s'])} | {opt(l['amx_bf16_gflop_per_s'])} |")
    rows = []
    names = dict(ORDER)
    for k in keys:
        g = groups[k]
        m = re.match(r"(pp512|tg128)_t(\d+)$", k)
        t = int(m.group(2)) if m else max(mach)
        if t not in mach or not mach[t].get("cost"):
            continue
        lim, cost = mach[t]["limits"], mach[t]["cost"]
        cells = {}
        for side in ("smolt", "peer"):
            if not g[side]:
                continue
            med = statistics.median(g[side])
            if m and m.group(1) == "tg128":
                work, peak, what = med * cost["decode_bytes_per_token"] / 1e9, lim["read_gb_per_s"], "GB/s of read bandwidth"
            elif m:
                work, peak, what = med * cost["prefill_ops_per_token"] / 1e9, lim["int8_gop_per_s"], "GOP/s of the int8 VNNI peak"
            elif k.startswith("train_"):
                if side == "smolt" and k.endswith(AUTOCAST):
                    continue  # smolt's share is on the row of the f32 peer
                srec = next((r for r in g["recs"] + g.get("smolt_recs", [])
                             if r["side"] == "smolt" and not r.get("skipped")), None)
                fpt = train_flops_per_token(srec, cost) if srec else None
                if fpt is None:
                    continue
                if side == "smolt":
                    peak = lim["amx_bf16_gflop_per_s"] or lim["bf16_gflop_per_s"] or lim["f32_gflop_per_s"]
                    what = "GFLOP/s of the " + ("AMX bf16" if lim["amx_bf16_gflop_per_s"] else
                                                "bf16" if lim["bf16_gflop_per_s"] else "f32") + " peak"
                elif k.endswith(AUTOCAST):
                    peak = lim["amx_bf16_gflop_per_s"] or lim["bf16_gflop_per_s"]
                    what = "GFLOP/s of the " + ("AMX bf16" if lim["amx_bf16_gflop_per_s"] else "bf16") + " peak"
                else:
                    peak, what = lim["f32_gflop_per_s"], "GFLOP/s of the f32 peak"
                work = med * fpt / 1e9
            else:
                continue
            if peak:
                cells[side] = f"{work:.1f} {what} = {100 * work / peak:.0f}%"
        if cells:
            rows.append(f"| {names.get(k, k)} | {cells.get('smolt', '—')} | {cells.get('peer', '—')} |")
    if rows:
        out += ["", "Each figure's median as a share of the limit that binds it (decode streams every weight once per "
                "token; prefill is int8 dot products on the quantized weights; training counts 4 × body parameters per "
                "token plus 4 × head parameters per token with a loss — the frozen weights' forward and input "
                "gradient — on bf16 hardware for smolt (AMX tiles, else AVX-512 BF16, where the head's forward "
                "half runs on int8 VNNI at up to twice that peak, so shares near 100% are possible), f32 for "
                "PyTorch, bf16 for PyTorch under autocast):", "",
                "| figure | smolt | peer |", "|---|---|---|"] + rows
    return out + [""]


def details(keys, groups):
    out = []
    for k in keys:
        for r in groups[k]["recs"]:
            if r.get("skipped"):
                continue
            extra = []
            if r.get("config"):
                extra.append(r["config"])
            if "loss_first" in r:
                extra.append(f"loss {r['loss_first']:.3f} → {r['loss_last']:.3f} over {r.get('steps')} steps "
                             f"({r.get('warmup_steps', 0)} warm-up, not timed)")
            if r.get("tok_s") is not None and r.get("workload") == "receipts" and r.get("tokens_measured"):
                extra.append(f"overall {r['tok_s']:.1f} tok/s ({r.get('tokens_measured')} tokens in "
                             f"{r.get('seconds_measured', 0):.1f} s)")
            if r.get("runs"):
                g0 = r["runs"][0]
                extra.append(f"{g0.get('prompt_tokens', '?')} prompt tokens, {g0.get('eval_tokens', '?')} generated, "
                             f"valid JSON: {all(g.get('valid_json') for g in r['runs'])}")
            if r.get("generated_tokens") is not None:
                extra.append(f"{r['generated_tokens']} tokens written")
            if r.get("command"):
                extra.append(f"`{r['command']}`")
            out.append(f"- **{k}** ({r['side']}, {r.get('tool', '?')}): " + ("; ".join(extra) or "no details"))
    return out


def medians(groups):
    """figure -> (smolt median, peer median, ratio oriented so that > 1 means smolt is better); None where missing."""
    out = {}
    for k, g in groups.items():
        better = next((r.get("better") for r in g["recs"] if r.get("better")), "higher")
        s = statistics.median(g["smolt"]) if g["smolt"] else None
        p = statistics.median(g["peer"]) if g["peer"] else None
        ratio = None
        if s and p and s > 0 and p > 0:
            ratio = s / p if better == "higher" else p / s
        out[k] = (s, p, ratio)
    return out


def headline(meds):
    """'pp 2.17/2.11 · tg 1.42/1.49 · rcpt 6.02 · all 3.55 · lat 2.27' from the figures measured on both sides."""
    parts = []
    for label, keys in HEADLINE:
        vals = [f"{meds[k][2]:.2f}" for k in keys if k in meds and meds[k][2] is not None]
        if vals:
            parts.append(f"{label} {'/'.join(vals)}")
    return " · ".join(parts) or "no ratio (one side only)"


def short_machine(m):
    """'AMD EPYC', 'Intel Xeon, AMX': lscpu's model name without (R)/(TM)/'Processor', AMX if present."""
    name = re.sub(r"\((R|TM|tm)\)", "", m["model"])
    name = re.sub(r"\s+(CPU|Processor)\b.*$", "", name).strip() or m["model"]
    has_amx = not m["flags"].startswith("none of") and "amx_tile" in m["flags"].split(", ")
    return name + (", AMX" if has_amx else "")


def results_path(directory, when):
    """DIR/YYYY-MM-DD-HHMM.md for a heading time 'YYYY-MM-DD HH:MM UTC'; a free -2, -3, ... if taken."""
    stem = when[:10] + "-" + when[11:13] + when[14:16]
    path = os.path.join(directory, stem + ".md")
    n = 2
    while os.path.exists(path):
        path = os.path.join(directory, f"{stem}-{n}.md")
        n += 1
    return path


def index_row(when, machine_label, commit, ratios, link_text, link, quick=False):
    return (f"| {when.replace(' UTC', '')} | {machine_label} | {commit or 'not stated'} | "
            f"{'`--quick`: ' if quick else ''}{ratios} | [{link_text}]({link}) |")


def insert_index_row(text, row):
    """The text with row inserted just below the header separator of the first table after the
    runs-index marker line (newest first); None if there is no such marker and table."""
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if l.lstrip().startswith(INDEX_MARKER)), None)
    if start is None:
        return None
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("|---"):
            return "\n".join(lines[:i + 1] + [row] + lines[i + 1:])
        if lines[i].strip() and not lines[i].startswith("|"):
            return None  # prose before any table: the marker is not where it should be
    return None


def summary_rows(keys, meds, groups, machine_label, date, link_text, link):
    """Rows shaped like BENCHMARKS.md's "Current figures" tables, to paste where this run becomes the reference."""
    names = dict(ORDER)
    out = []
    for k in keys:
        s, p, ratio = meds[k]
        unit = next((r.get("unit") for r in groups[k]["recs"] if r.get("unit")), "")
        cell = lambda v: fmt(v, unit) if v is not None else "—"
        out.append(f"| {names.get(k, k)} | {machine_label}, {date} | {cell(s)} | {cell(p)} | "
                   f"{f'**{ratio:.2f}×**' if ratio else '—'} | | [{link_text}]({link}) |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="JSON-lines files")
    ap.add_argument("--results-dir", help="write the section to a new dated file in this directory (bench/results)")
    ap.add_argument("--index", help="with --results-dir: the markdown file whose index of runs gets a row (BENCHMARKS.md)")
    ap.add_argument("--out", help="append the section to this markdown file instead")
    ap.add_argument("--commit", default=None, help="the source tree's commit, e.g. 'abc1234 (with uncommitted changes)'")
    ap.add_argument("--when", default=None,
                    help="the section's time, 'YYYY-MM-DD HH:MM' UTC (default: now); for a report written afterwards")
    ap.add_argument("--command", default=None, help="the command that produced the results")
    ap.add_argument("--note", action="append", default=[], help="a line for the notes (repeatable)")
    ap.add_argument("--load", default=None, help="load averages, e.g. 'before 0.1 0.2 0.3; after 1.9 1.5 1.2'")
    args = ap.parse_args()

    recs = load(args.results)
    if not recs:
        print("report.py: no result records in " + ", ".join(args.results), file=sys.stderr)
        sys.exit(2)
    m = machine()
    if args.when:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", args.when):
            ap.error("--when takes 'YYYY-MM-DD HH:MM' (UTC)")
        now = args.when + " UTC"
    else:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.index and not args.results_dir:
        ap.error("--index goes with --results-dir")
    lines, notes, keys, groups = table(recs)
    sec = [f"## Run of {now}", ""]
    sec += [f"- Command: `{args.command}`" if args.command else "- Command: (not given)",
            f"- Source tree: {args.commit}" if args.commit else "",
            f"- Machine: {m['model']}; {m['cpus']}; {m['memory']} RAM"
            + (f"; {m['hypervisor']} guest" if m['hypervisor'] else "") + f"; Linux {m['kernel']}",
            f"- CPU features of interest: {m['flags']}",
            f"- Caches: {m['caches']}" if m["caches"] else "",
            f"- Load average (1/5/15 min): {args.load}" if args.load else "",
            f"- Versions: {versions(recs)}", ""]
    sec = [s for s in sec if s != ""] + [""]
    sec += lines + [""]
    sec += limits_section(recs, keys, groups)
    if args.load:
        # Only the load before the run says whether something else was running: the load after
        # it is the run's own (about one per thread it used).
        before = re.search(r"before\s*([\d.]+) [\d.]+ [\d.]+", args.load)
        if before and float(before.group(1)) > 0.5:
            notes.insert(0, f"- The machine was not idle before the run (1-minute load average "
                            f"{float(before.group(1)):.1f} on {os.cpu_count()} CPUs; it decays over minutes, so a job "
                            f"that just ended also shows): check that nothing else ran.")
    if notes or args.note:
        sec += ["Notes:"] + [f"- {n}" for n in args.note] + notes + [""]
    sec += ["<details><summary>Per-figure details and exact peer commands</summary>", ""] + details(keys, groups) + ["", "</details>", ""]
    text = "\n".join(sec)
    if args.results_dir:
        os.makedirs(args.results_dir, exist_ok=True)
        path = results_path(args.results_dir, now)
        back = ""
        if args.index:
            rel = os.path.relpath(os.path.abspath(args.index), os.path.dirname(os.path.abspath(path)))
            back = f"[← {os.path.basename(args.index)}]({rel}) (summary of current figures, index of all runs). "
        with open(path, "x", encoding="utf-8") as fh:
            fh.write(back + "This section was written by `bench/report.py`.\n\n" + text + "\n")
        print(f"report.py: wrote {path}", file=sys.stderr)
        meds = medians(groups)
        label = short_machine(m)
        quick = bool(args.command and "--quick" in args.command)
        if args.index:
            link = os.path.relpath(path, os.path.dirname(os.path.abspath(args.index)) or ".")
            row = index_row(now, label, args.commit, headline(meds), os.path.basename(path), link, quick)
            try:
                with open(args.index, encoding="utf-8") as fh:
                    updated = insert_index_row(fh.read(), row)
            except OSError:
                updated = None
            if updated is None:
                print(f"report.py: no runs index (a '{INDEX_MARKER}' line above a table) in {args.index}; "
                      f"add this row to it by hand:\n{row}", file=sys.stderr)
            else:
                with open(args.index, "w", encoding="utf-8") as fh:
                    fh.write(updated)
                print(f"report.py: added the run to the index of runs in {args.index}", file=sys.stderr)
        else:
            link = path
        print("report.py: REMINDER: if this run is the new reference, update the \"Current figures\" tables of "
              "BENCHMARKS.md by hand (keep or rewrite their caveats); this run's medians, as rows for them:",
              file=sys.stderr)
        for row in summary_rows(keys, meds, groups, label, now[:10], now[11:16] + " run", link):
            print(row, file=sys.stderr)
    elif args.out:
        new = not os.path.exists(args.out)
        with open(args.out, "a", encoding="utf-8") as fh:
            if new:
                fh.write("# smolt benchmarks\n\nWritten by `bench/report.py` (see bench/README.md). "
                         "min / **median** / max over the samples of each figure.\n\n")
            fh.write(text + "\n")
        print(f"appended to {args.out}", file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
