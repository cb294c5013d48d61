"""Test strings for tokenizer parity: unicode, CJK, emoji, whitespace runs, code, special-token text."""
from __future__ import annotations

BASE = [
    "", " ", "  ", "\t", "\n", "\n\n", " \n ", "\r\n", "a", " a", "a ", "  a  ",
    "Hello world", " Hello world", "Hello  world", "Hello\tworld", "Hello\nworld", "Hello\n\nworld\n",
    "The quick brown fox jumps over the lazy dog.", "I'm sure you're right, aren't you? Yes!",
    "Once upon a time, there was a little girl named Lily.", "Tom and Sam played in the park.",
    "héllo wörld, ça va? naïve café", "Ünïcödé ÀÉÎÕÜ ßẞ æøå", "Привет, мир!", "Γειά σου Κόσμε",
    "你好，世界！", "日本語のテキストです。", "한국어 문장입니다", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "ภาษาไทย", "🤗🚀🔥 emoji 👍🏽 test", "👨‍👩‍👧‍👦 family", "🇫🇷🇯🇵 flags", "a\u200bb zero width", "\u00a0nbsp\u00a0",
    "def foo(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "import numpy as np\nnp.zeros((3, 4), dtype=np.float32)", "<div class=\"x\">&amp; &lt;tag&gt;</div>",
    "SELECT * FROM users WHERE id = 42;", "{\"key\": [1, 2.5, null, true]}", "x = y ** 2 // 3 % 4",
    "    indented with spaces", "\tindented with tab", "trailing spaces   ", "   leading spaces",
    "many     spaces     between", "tabs\t\t\tand\t\tspaces", "line1\nline2\nline3", "\n\nleading newlines",
    "<s>", "</s>", "<unk>", "<s> hello </s>", "Hello <s>. world", "a</s>b", "<s><s></s></s>",
    "<|endoftext|>", "text<|endoftext|>more", " <|endoftext|> ", "<|endoftext|><|endoftext|>",
    "<pad> <mask> [CLS] [SEP]", "<|im_start|>user\nhi<|im_end|>", "[INST] question [/INST]",
    "12345 67890", "3.14159 2.71828 1e-10", "0x1F 0b1010 0o777", "$100.00 €50 £20 ¥1000",
    "email@example.com https://example.com/path?q=1&r=2#frag", "C:\\Users\\name\\file.txt",
    "!!!???...,,,;;;:::", "'single' \"double\" `back`", "(((nested))) [[[brackets]]] {{{braces}}}",
    "ALL CAPS TEXT", "MiXeD cAsE tExT", "snake_case_name camelCaseName PascalName kebab-case",
    "a" * 50, "ab " * 30, "🙂" * 10, "漢字" * 12, "\u0301combining accent", "e\u0301 vs é",
    "math: ∑ ∫ √ ∞ ≠ ≤ ≥ ± × ÷", "arrows → ← ↑ ↓ ⇒", "box ─│┌┐└┘", "\x00\x01\x7f control",
    "The end.", "?", "...", "-", "--", "—", "«quotes»", "“curly” ‘quotes’",
]


def sample_texts() -> list[str]:
    """At least 200 distinct strings: the base list plus whitespace/combination variants."""
    texts = list(BASE)
    for text in BASE[12:60]:
        texts.append(" " + text)
        texts.append(text + "\n")
    for left, right in zip(BASE[20:50], BASE[50:80]):
        texts.append(f"{left} {right}")
    seen, unique = set(), []
    for text in texts:
        if text not in seen:
            seen.add(text)
            unique.append(text)
    return unique
