#!/usr/bin/env python3
"""Reference token ids from llama.cpp for smolt's byte-level BPE tokenizer.

Writes crates/tokenizer/tests/fixtures/tokenizer_bpe.json: a corpus of strings (built here,
deterministically, from a fixed seed) and, for each vocabulary below, the ids llama.cpp's
`llama_tokenize` gives for every string with special-token parsing on and off, BOS as the
GGUF says (`add_special=True`).

Vocabularies:
- `qwen2`: Qwen2.5-Coder-0.5B-Instruct Q4_K_M as smolt fetches it (`--model qwen2.5-0.5b`),
  `tokenizer.ggml.pre = "qwen2"`;
- `llama-bpe`, `smollm`, `gpt-2`, `default`: the same vocabulary and merges with `pre`
  rewritten (vocab-only GGUF copies), which exercises those pre-tokenizers on a real
  vocabulary; the `llama-bpe` copy also drops `add_bos_token`, so llama.cpp's Llama 3
  default (BOS on) applies;
- `tiny-qwen2`, `tiny-llama-bpe`: a ~330-token vocabulary trained here with plain BPE and
  then damaged on purpose (a merge whose result is no token, merges naming missing tokens, a
  pair listed twice, lines that are no pair, a missing byte character, whole-word tokens no
  merge reaches), stored whole in the fixture so the Rust test can rebuild it. (A repeated
  token text is left out: llama.cpp aborts on one.)

Needs the `gguf` package and llama.cpp's Python bindings, e.g.
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install gguf numpy typing_extensions \\
        diskcache jinja2 llama-cpp-python==0.3.36
or, without compiling llama.cpp a second time, the bindings' source from the same sdist on
PYTHONPATH and LLAMA_CPP_LIB_PATH at the libraries bench/build_llamacpp.sh built:
    SMOLT_BENCH_DIR=/tmp/lcpp bash bench/build_llamacpp.sh
    tar xzf /tmp/lcpp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcpp llama_cpp_python-0.3.36/llama_cpp
    LLAMA_CPP_LIB_PATH=/tmp/lcpp/llama.cpp/build/bin \\
    PYTHONPATH=/tmp/lcpp/llama_cpp_python-0.3.36 \\
        /tmp/ref/bin/python scripts/tokenizer_reference.py --qwen ~/.cache/smolt/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from gguf import GGUFReader, GGUFValueType, GGUFWriter

SEED = 20240522
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/tokenizer/tests/fixtures/tokenizer_bpe.json"

# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------

HAND = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "Hello world",
    "Hello  world",
    "Hello   world  ",
    " Hello world",
    "hello\tworld\t\ttabs",
    "line one\nline two\n\nline four\n",
    "crlf line\r\nnext line\r\n\r\nlast",
    "mixed \t \n \r\n  \t\t\n end",
    "trailing spaces     ",
    "     leading spaces",
    "    indented code\n        more",
    "a\u00a0b\u00a0\u00a0c",
    "ideographic\u3000space\u3000\u3000x",
    "line\u2028separator\u2029para",
    "next\u0085line",
    "zero\u200bwidth\u200bspace",
    "\ufeffBOM at start",
    "0",
    "12",
    "123",
    "1234",
    "12345678901234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "1,234,567.89",
    "-42 +17 1e-9 0x1F 0b1010 1_000_000",
    "phone: +60 12-345 6789, ext. 0042",
    "2024-05-22T13:45:07Z",
    "١٢٣٤٥ ٦٧٨٩٠",
    "１２３ ｆｕｌｌｗｉｄｔｈ",
    "x² + y³ = z⁴, ½ ¼ ¾",
    "Ⅻ o'clock, ⅷ",
    "I'm you're he's we've they'll I'd it's",
    "I'M YOU'RE HE'S WE'VE THEY'LL I'D IT'S",
    "don't won't can't shan't o'clock rock'n'roll",
    "'s 't 're 've 'm 'll 'd",
    "''quoted'' 'single' \"double\" `back`",
    "l'été d'un garçon",
    "!!! ??? ... ,,, ;;; ::: --- ___ ***",
    "(a) [b] {c} <d> «e» “f” ‘g’",
    "a+b=c; x<=y>=z; p!=q; r==s; t&&u||v",
    "~!@#$%^&*()_+`-=[]\\{}|;':\",./<>?",
    "—–-‐‑‒―",
    "…‥。、・",
    "email: john.doe+tag@example.co.uk",
    "https://example.com/path?q=1&r=%20x#frag",
    "C:\\Users\\name\\file.txt",
    "/usr/local/bin/python3 -m pip install -U pip",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 텍스트입니다.",
    "مرحبا بالعالم! هذا اختبار.",
    "שלום עולם",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "สวัสดีชาวโลก",
    "Привет, мир! Ёлки-палки.",
    "Γειά σου Κόσμε",
    "Tiếng Việt có dấu",
    "ქართული ენა",
    "Ελληνικά and English and 中文 mixed",
    "e\u0301 vs \u00e9; a\u0308 vs \u00e4; n\u0303",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L",
    "😀",
    "😀😃😄😁",
    "👍🏽 👍🏿",
    "👨‍👩‍👧‍👦 family",
    "🏳️‍🌈 🏴‍☠️",
    "🇫🇷🇩🇪🇯🇵",
    "1️⃣ #️⃣ *️⃣",
    "❤️ ♥ ☺ ✓ ✗ ★",
    "emoji😀inside😀words",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\n  spaced  <|im_end|>",
    "text<|endoftext|>more text",
    "<tool_call>{\"name\": \"f\"}</tool_call>",
    "<|im_start",
    "im_start|>",
    "<|<|im_end|>|>",
    "<|im_end|><|im_end|><|im_end|>",
    " <|im_start|> ",
    "<|fim_prefix|>def f():<|fim_suffix|>\n    return 1<|fim_middle|>",
    "<|box_start|>(1,2),(3,4)<|box_end|>",
    "[PAD151665] looks like a pad token",
    "<s> </s> <unk> [CLS] [SEP] <pad>",
    "\u0000",
    "a\u0000b",
    "\u0001\u0002\u0003\u001b[31mred\u001b[0m",
    "\u007f\u0080\u0081\u009f",
    "\ufffd replacement \ufffd\ufffd",
    "\ue000\uf8ff private use",
    "\uffff\ufffe nonchars",
    "\U0010ffff\U000f0000",
    "\u0378\u0379 unassigned",
    "\u1c89\u1c8a new in Unicode 16",
    "\U0001d400\U0001d41a math bold",
    "Ã©tÃ© mojibake Ã¼ber",
    "\u00ad soft\u00adhyphen",
    "ÿþý ¡¢£¤¥¦§¨©ª«¬®¯°±",
    "ĀāĂăĄą ĠġĢ",
    "ĊĠĉ look like byte chars",
    "a" * 300,
    " " * 300,
    "\n" * 50,
    "9" * 500,
    "ab" * 200,
    "aaa",
    "aaaaa",
    "a" * 301,
    " " * 301 + "x",
    "-" * 7 + " " + "=" * 9 + " " + "*" * 11,
    "0" * 7 + " " + "1" * 11,
    "\n" * 7 + "\t" * 5,
    "Hmmmmm soooo zzzzz lll eee ttt",
    "hello world hello  world hellohello",
    "the then there these those",
    "quick quiz queue",
    "QUJD" * 100 + "==",
    "x = [1, 2, 3]\nprint(sum(x))  # 6\n",
]

CODE = [
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "class Stack:\n\tdef __init__(self):\n\t\tself.items = []\n\n\tdef push(self, x):\n\t\tself.items.append(x)\n",
    "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)\narr[1:, ::2] += 1.5e-3\n",
    "@decorator(arg=True)\nasync def main() -> None:\n    await asyncio.sleep(0.1)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "impl<'a, T: Clone + 'a> Iterator for Iter<'a, T> {\n    type Item = &'a T;\n}\n",
    "#[derive(Debug, Clone, PartialEq)]\npub struct Point { x: f64, y: f64 }\n",
    "#include <stdio.h>\nint main(void) {\n    printf(\"%d\\n\", 42);\n    return 0;\n}\n",
    "template <typename T>\nstd::vector<T> f(const std::vector<T>& v) { return v; }\n",
    "const add = (a, b) => a + b;\nconsole.log(`sum: ${add(1, 2)}`);\n",
    "function foo() {\r\n  var x = 1;\r\n  return x === 1 ? 'yes' : \"no\";\r\n}\r\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE 'A%' ORDER BY id DESC;",
    "<!DOCTYPE html>\n<html lang=\"en\">\n  <body><p class=\"x\">Hi &amp; bye</p></body>\n</html>\n",
    "{\"key\": \"value\", \"n\": [1, 2.5, -3e10], \"nested\": {\"ok\": true, \"v\": null}}",
    "---\nname: ci\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n",
    "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
    "main :: IO ()\nmain = mapM_ print [x * 2 | x <- [1..10], odd x]\n",
    "(defun square (x) (* x x))\n(mapcar #'square '(1 2 3))",
    "\\begin{equation}\n  E = mc^2 \\quad \\int_0^\\infty e^{-x} dx\n\\end{equation}",
    "x => x.map(_ => _ ** 2).filter(Boolean) ?? [] ?. length",
    "if (a && !b || c) { i++; j--; k <<= 2; m >>>= 1; }",
    "    \n    \n\tmixed indentation\n  \t  \n",
    "s = 'it''s'; t = \"can't\"; u = '''triple'''",
    "regex = r'^(?:[a-z0-9!#$%&*+/=?^_`{|}~-]+)@\\w+\\.com$'",
    "// comment\n/* block\n   comment */\n/// doc comment\n",
    "Makefile:\nall:\n\t$(CC) -O2 -o $@ $^\n",
    "diff --git a/x b/x\n@@ -1,3 +1,4 @@\n-old\n+new\n context\n",
]

STORES = ["SYARIKAT", "KEDAI", "RESTORAN", "PASAR MINI", "TRADING", "ENTERPRISE", "MART",
          "HARDWARE", "BOOKSTORE", "BAKERY", "FARMASI", "STATIONERY", "SUPERMARKET"]
NAMES = ["AIK HUAT", "SIN LIAN", "MR. D.I.Y.", "GOLDEN KEY", "99 SPEED", "UNIHAKKA",
         "LEONG BROTHERS", "OJC", "TOH YEW", "PERNIAGAAN ZHENG", "MY HAPPY", "BOOK TA .K"]
STREETS = ["JALAN", "JLN", "LORONG", "TAMAN", "PERSIARAN", "LEBUH"]
PLACES = ["KUALA LUMPUR", "PETALING JAYA", "SHAH ALAM", "JOHOR BAHRU", "IPOH", "KLANG",
          "SEREMBAN", "MELAKA", "PUCHONG", "CHERAS"]
ITEMS = ["NASI LEMAK", "TEH TARIK", "KOPI O", "ROTI CANAI", "MEE GORENG", "A4 PAPER 80GSM",
         "PEN BLUE 0.5MM", "STAPLER NO.10", "BATTERY AA 4S", "MINERAL WATER 1.5L",
         "CHICKEN RICE", "ICE LEMON TEA", "SCREW 6X1\"", "PVC PIPE 3/4\"", "GLUE STICK 21G",
         "MILO PKT", "BREAD WHOLEMEAL", "EGG GRADE A (10)", "SUGAR 1KG", "RICE 5KG"]


def receipt(rng: random.Random) -> str:
    nl = "\r\n" if rng.random() < 0.25 else "\n"
    lines = [f"{rng.choice(NAMES)} {rng.choice(STORES)}", f"({rng.randint(100000, 999999)}-{rng.choice('ABCDKMPTUVWX')})"]
    lines.append(f"NO. {rng.randint(1, 300)}, {rng.choice(STREETS)} {rng.choice(['SS', 'PJU', 'USJ', 'BU'])} {rng.randint(1, 30)}/{rng.randint(1, 20)},")
    lines.append(f"{rng.randint(10000, 99999)} {rng.choice(PLACES)}.")
    lines.append(f"TEL: 0{rng.randint(3, 9)}-{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}  GST ID: {rng.randint(10**11, 10**12 - 1):012d}")
    lines.append(rng.choice(["TAX INVOICE", "SIMPLIFIED TAX INVOICE", "RECEIPT", "CASH BILL"]))
    d = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2016, 2019)}"
    t = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    lines.append(f"INV NO: {rng.choice(['CS', 'INV', 'T'])}{rng.randint(10**5, 10**8)}   DATE: {d} {t}")
    lines.append("-" * rng.randint(20, 44))
    total = 0.0
    for _ in range(rng.randint(1, 8)):
        qty = rng.randint(1, 12)
        price = rng.randint(50, 9999) / 100
        amount = qty * price
        total += amount
        tax = rng.choice(["SR", "ZR", "S", ""])
        style = rng.random()
        if style < 0.4:
            lines.append(f"{rng.choice(ITEMS)}")
            lines.append(f"  {qty} x {price:.2f}{' ' * rng.randint(1, 12)}{amount:.2f} {tax}")
        elif style < 0.8:
            lines.append(f"{qty:>3} {rng.choice(ITEMS):<24}{price:>8.2f}{amount:>9.2f}")
        else:
            lines.append(f"{rng.choice(ITEMS)}\t{qty}\t@{price:.2f}\t{amount:.2f}")
    gst = round(total * 0.06, 2)
    rounding = rng.choice([0.0, -0.01, 0.02, -0.02, 0.01])
    lines += [
        f"SUB TOTAL (EXCL GST):{' ' * rng.randint(1, 10)}{total:.2f}",
        f"GST @6%: {gst:.2f}",
        f"ROUNDING ADJ {rounding:+.2f}",
        f"TOTAL: RM {total + gst + rounding:,.2f}",
        f"CASH{' ' * rng.randint(2, 20)}{total + gst + 10:.2f}",
        f"CHANGE {10 - rounding:.2f}",
        rng.choice(["THANK YOU! PLEASE COME AGAIN", "GOODS SOLD ARE NOT RETURNABLE", "*** THANK YOU ***", "Terima kasih"]),
    ]
    text = nl.join(lines)
    return ocr_noise(rng, text) if rng.random() < 0.7 else text


def ocr_noise(rng: random.Random, text: str) -> str:
    swaps = {"O": "0", "0": "O", "I": "1", "l": "1", "S": "5", "B": "8", ".": ",", ":": ";", "-": "~"}
    out = []
    for c in text:
        r = rng.random()
        if r < 0.02 and c in swaps:
            out.append(swaps[c])
        elif r < 0.03 and c == " ":
            continue
        elif r < 0.04 and c == " ":
            out.append("  ")
        elif r < 0.045:
            out.append(c + rng.choice("'`.,|"))
        elif r < 0.05:
            out.append(c.lower())
        else:
            out.append(c)
    return "".join(out)


POOLS = {
    "ascii": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "space": " \t\n\r\u00a0\u3000\u2028\u0085\u2009\u000b\u000c",
    "latin": "éèêëàâäôöûüçñßøåæœÉÀÇŒĳŁłŠšŽžĞğİıŞş",
    "marks": "\u0301\u0300\u0308\u0303\u0327\u094d\u093e\u0e31\u05b7\u064e\u20dd\ufe0f\u200d",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴",
    "hangul": "가나다라마바사아자차카타파하한국어텍스트입니다",
    "kana": "あいうえおかきくけこアイウエオカキクケコー",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي٠١٢٣٤٥٦٧٨٩",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשת",
    "devanagari": "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह०१२३४५६७८९",
    "thai": "กขคงจฉชซญฎฏฐฑฒณดตถทธนบปผพฟภมยรลวศษสหฬอฮ",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗ",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔ",
    "emoji": "😀😂🤣😍🙏👍🔥✨🎉💯🚀🌍🍕⚽🇫🇷🇯🇵👨‍👩‍👧🏽🏿❤",
    "symbols": "€£¥₹©®™°±×÷§¶•…‰′″←→↑↓∞≈≠≤≥√∑∏∫★☆♠♣♥♦",
    "numbers_other": "²³¹¼½¾ⅠⅡⅢⅫ①②③０１２３",
    "odd": "\u0000\u0001\u001f\u007f\u0080\u00ad\u200b\u200e\u2060\ufeff\ufffd\ue000\uffff\u0378\u1c89",
}
SPECIAL_BITS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>",
                "<|fim_pad|>", "<|", "|>", "im_start", "<|im_", "[PAD151700]"]


def random_text(rng: random.Random) -> str:
    names = list(POOLS)
    weights = [8, 4, 4, 6, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    out = []
    for _ in range(rng.randint(1, 12)):
        if rng.random() < 0.05:
            out.append(rng.choice(SPECIAL_BITS))
            continue
        pool = POOLS[rng.choices(names, weights)[0]]
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
        if rng.random() < 0.4:
            out.append(rng.choice([" ", " ", "  ", "\n", "\t", "'s ", "'LL ", ", ", ". "]))
    return "".join(out)


def random_codepoints(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 24)):
        while True:
            cp = rng.randrange(0x110000) if rng.random() < 0.5 else rng.randrange(0x3000)
            if not 0xD800 <= cp <= 0xDFFF:
                break
        out.append(chr(cp))
        if rng.random() < 0.2:
            out.append(" ")
    return "".join(out)


def words_text(rng: random.Random) -> str:
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "It's", "we're",
             "CAPS", "MiXeD", "under_score", "camelCase", "kebab-case", "e.g.", "i.e.", "etc",
             "naïve", "café", "Zürich", "São", "Paulo", "1st", "2nd", "3rd", "4th", "100%",
             "$5.99", "#tag", "@user", "C++", "C#", "F#", ".NET", "Node.js", "v1.2.3-rc.1"]
    seps = [" ", " ", " ", "  ", "\t", "\n", ", ", ". ", "; ", " - ", "\r\n", "   \n"]
    text = "".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(1, 30)))
    return text.rstrip(" ") if rng.random() < 0.5 else text


def build_corpus() -> list[tuple[str, str]]:
    rng = random.Random(SEED)
    cases = [(s, "hand") for s in HAND] + [(s, "code") for s in CODE]
    cases += [(receipt(rng), "receipt") for _ in range(100)]
    cases += [(words_text(rng), "words") for _ in range(150)]
    cases += [(random_text(rng), "random") for _ in range(600)]
    cases += [(random_codepoints(rng), "codepoints") for _ in range(60)]
    # Three long receipts: one fragment per case keeps failures readable, these keep it real.
    cases += [("\n\n".join(receipt(rng) for _ in range(6)), "receipt_long") for _ in range(3)]
    seen, out = set(), []
    for s, tag in cases:
        if s not in seen:
            seen.add(s)
            out.append((s, tag))
    return out


# --------------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def copy_gguf(src: GGUFReader, path: str, overrides: dict, drop: set) -> None:
    """A vocab-only copy of `src` (all metadata, no tensors) with some keys replaced."""
    arch = src.fields["general.architecture"].contents()
    w = GGUFWriter(path, arch)
    for key, field in src.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop or key in overrides:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub)
    for key, (val, vtype, sub) in overrides.items():
        w.add_key_value(key, val, vtype, sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def train_tiny(corpus: list[str], n_merges: int) -> tuple[list[str], list[str]]:
    """Plain byte-level BPE training on space-split words: enough to give real merges."""
    b2u = bytes_to_unicode()
    words: dict[tuple[str, ...], int] = {}
    for text in corpus:
        for w in text.split(" "):
            key = tuple(b2u[b] for b in (" " + w).encode())
            words[key] = words.get(key, 0) + 1
    merges = []
    for _ in range(n_merges):
        pairs: dict[tuple[str, str], int] = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        new = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        words = new
    tokens = [b2u[b] for b in range(256)] + [a + b for a, b in merges]
    return tokens, [f"{a} {b}" for a, b in merges]


def tiny_vocab(corpus: list[str]) -> dict:
    train = [s for s, tag in corpus if tag in ("words", "receipt", "code")][:120]
    tokens, merges = train_tiny(train, 60)
    types = [1] * len(tokens)
    # Damage, each a path llama.cpp takes without complaint:
    # - the byte character of 'q' is gone (a byte with no token is dropped);
    tokens[ord("q")] = "[no q]"
    # - a merge whose result is not a token (the merged symbol falls back to its bytes);
    merges.insert(3, "z z")
    # - merges naming strings that are not tokens (reachable only through other merges);
    merges.insert(10, "zz z")
    merges.append("x y")
    merges.append("xy !")
    # - a pair listed twice, where which listing counts changes ids: "h e" first, then
    #   "t h", then "h e" again at the end; llama.cpp keeps the first rank, so "the" is t + he;
    for t in ["th", "he"]:
        if t not in tokens:
            tokens.append(t)
            types.append(1)
    merges[:0] = ["h e", "t h"]
    merges.append("h e")
    # - lines that are not pairs;
    merges += ["nospace", "", " leadingspace x"]
    # - whole words that are tokens no merge reaches (only `ignore_merges`, i.e. llama-bpe,
    #   emits them);
    for word in ["hello", "Ġworld", "Ġhello", "the", "Ġthe"]:
        if word not in tokens:
            tokens.append(word)
            types.append(1)
    # - specials: control, user-defined, and one that is only control by llama.cpp's text rules;
    for t, ty in [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 1), ("<tool>", 4)]:
        tokens.append(t)
        types.append(ty)
    return {"tokens": tokens, "types": types, "merges": merges,
            "bos": tokens.index("<|endoftext|>"), "eos": tokens.index("<|im_end|>")}


def write_tiny(src: GGUFReader, path: str, v: dict, pre: str) -> None:
    s, a, i32, u32, b = (GGUFValueType.STRING, GGUFValueType.ARRAY, GGUFValueType.INT32,
                          GGUFValueType.UINT32, GGUFValueType.BOOL)
    drop = {k for k in src.fields if k.startswith("tokenizer.")}
    copy_gguf(src, path, {
        "tokenizer.ggml.model": ("gpt2", s, None),
        "tokenizer.ggml.pre": (pre, s, None),
        "tokenizer.ggml.tokens": (v["tokens"], a, s),
        "tokenizer.ggml.token_type": (v["types"], a, i32),
        "tokenizer.ggml.merges": (v["merges"], a, s),
        "tokenizer.ggml.bos_token_id": (v["bos"], u32, None),
        "tokenizer.ggml.eos_token_id": (v["eos"], u32, None),
        "tokenizer.ggml.add_bos_token": (pre == "llama-bpe", b, None),
    }, drop)


# --------------------------------------------------------------------------------------------

def dump(fixture: dict) -> str:
    """Compact JSON with one case (and one id list) per line, so that diffs stay readable."""
    def c(x) -> str:
        return json.dumps(x, ensure_ascii=False, separators=(",", ":"))

    def lines(items) -> str:
        return "[\n" + ",\n".join(c(x) for x in items) + "\n]"

    parts = [f'"about":{json.dumps(fixture["about"], ensure_ascii=False, indent=1)}',
             f'"cases":{lines(fixture["cases"])}',
             f'"tiny":{c(fixture["tiny"])}']
    ids = []
    for name, r in fixture["ids"].items():
        ids.append(f'{c(name)}:{{"add_bos":{c(r["add_bos"])},"cases":{c(r["cases"])},\n'
                   f'"plain_where_different":{c(r["plain_where_different"])},\n'
                   f'"special":{lines(r["special"])}}}')
    parts.append('"ids":{\n' + ",\n".join(ids) + "\n}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qwen", required=True, help="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    qwen_sha = hashlib.sha256(Path(args.qwen).read_bytes()).hexdigest()
    corpus = build_corpus()
    texts = [s for s, _ in corpus]
    src = GGUFReader(args.qwen)
    tiny = tiny_vocab(corpus)

    tmp = tempfile.mkdtemp(prefix="bpe-ref-")
    vocabs = {"qwen2": args.qwen}
    for pre in ["llama-bpe", "smollm", "gpt-2", "default"]:
        path = os.path.join(tmp, f"qwen-vocab-{pre}.gguf")
        overrides = {"tokenizer.ggml.pre": (pre, GGUFValueType.STRING, None)}
        drop = {"tokenizer.ggml.add_bos_token"} if pre == "llama-bpe" else set()
        if pre == "default":
            drop.add("tokenizer.ggml.pre")  # llama.cpp's `default` is the absent key
            overrides = {}
        copy_gguf(src, path, overrides, drop)
        vocabs[pre] = path
    for pre in ["qwen2", "llama-bpe"]:
        path = os.path.join(tmp, f"tiny-{pre}.gguf")
        write_tiny(src, path, tiny, pre)
        vocabs[f"tiny-{pre}"] = path

    # Which cases each vocabulary is checked on: Qwen on all; its pre-tokenizer variants on
    # every other non-receipt case and ten receipts; the tiny vocabulary (whose ids are many
    # per string) on the short ones. This keeps the fixture near 1 MB.
    subsets = {}
    for name in vocabs:
        if name == "qwen2":
            pick = lambda i, s, tag: True  # noqa: E731
        elif name.startswith("tiny"):
            pick = lambda i, s, tag: (tag == "hand" and len(s) <= 200) or (len(s) <= 80 and i % 3 == 0)  # noqa: E731
        else:
            pick = lambda i, s, tag: (tag != "receipt" and i % 2 == 0) or (tag == "receipt" and i % 10 == 0)  # noqa: E731
        subsets[name] = [i for i, (s, tag) in enumerate(corpus) if pick(i, s, tag)]

    results = {}
    for name, path in vocabs.items():
        print(f"{name}: loading {path}", file=sys.stderr)
        m = Llama(path, vocab_only=True, verbose=False)
        special, plain = [], {}
        for i in subsets[name]:
            text = texts[i].encode()
            a = m.tokenize(text, add_bos=True, special=True)
            b = m.tokenize(text, add_bos=True, special=False)
            special.append(a)
            if a != b:
                plain[str(i)] = b
        results[name] = {"cases": subsets[name], "special": special, "plain_where_different": plain,
                         "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(m._model.vocab))}
        print(f"{name}: {len(subsets[name])} cases, {sum(map(len, special))} tokens, {len(plain)} "
              "differ without special parsing", file=sys.stderr)
        del m
    shutil.rmtree(tmp)

    fixture = {
        "about": {
            "what": "Byte-level BPE reference: llama.cpp's token ids for a corpus of strings, on "
                    "Qwen2.5-Coder's vocabulary with its own and four other pre-tokenizers, and "
                    "on a tiny damaged vocabulary.",
            "made_by": "scripts/tokenizer_reference.py (corpus built there from seed "
                       f"{SEED}; receipts are synthetic, not from any data set)",
            "corpus": f"{len(corpus)} strings: " + ", ".join(
                f"{sum(1 for _, t in corpus if t == tag)} {tag}"
                for tag in ["hand", "code", "receipt", "receipt_long", "words", "random", "codepoints"])
                + " (hand: whitespace, numbers, contractions, scripts, emoji, special-token text, "
                  "control and unassigned characters, long runs; random: mixes of all of these)",
            "reference": f"llama.cpp vendored in llama-cpp-python {llama_cpp.__version__} "
                         "(the sdist bench/build_llamacpp.sh builds), through the bindings: "
                         "Llama(path, vocab_only=True).tokenize(text.encode(), add_bos=True, "
                         "special=True|False); add_bos=True means BOS only where the GGUF wants it.",
            "model": f"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf, sha256 {qwen_sha}",
            "variants": "llama-bpe, smollm, gpt-2: the Qwen GGUF's metadata with "
                        "tokenizer.ggml.pre replaced (llama-bpe also without add_bos_token, so "
                        "llama.cpp's Llama 3 default BOS applies); default: without "
                        "tokenizer.ggml.pre. tiny-*: the vocabulary in `tiny`, pre qwen2 / "
                        "llama-bpe (add_bos_token true), bos = <|endoftext|>, eos = <|im_end|>.",
            "fields": {
                "cases[i]": "[text, tag]",
                "ids[vocab].cases": "the indices of the cases checked on that vocabulary",
                "ids[vocab].special[j]": "ids for cases[ids[vocab].cases[j]] with special-token parsing",
                "ids[vocab].plain_where_different": "ids without special parsing, keyed by case index, only where they differ",
                "ids[vocab].add_bos": "llama_vocab_get_add_bos for that vocabulary",
            },
        },
        "cases": [[s, tag] for s, tag in corpus],
        "tiny": tiny,
        "ids": results,
    }
    Path(args.out).write_text(dump(fixture))
    print(f"wrote {args.out}: {len(corpus)} cases, {Path(args.out).stat().st_size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
