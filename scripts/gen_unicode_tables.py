#!/usr/bin/env python3
"""Generates lib/airllm_unicode_tables.c: the Unicode character classes the
tokenizer's hand-written pre-tokenizer regexes need, as sorted code point
ranges for a binary search.

    python3 scripts/gen_unicode_tables.py > lib/airllm_unicode_tables.c

The classes follow what the Hugging Face `tokenizers` library's regex engines
mean by them:
  letter      \\p{L}  = Lu Ll Lt Lm Lo
  number      \\p{N}  = Nd Nl No   (also Rust's char::is_numeric, used by Digits)
  space       \\s     = the White_Space property (Oniguruma, Rust regex and
                       char::is_whitespace all use it)
  word        \\w     = Rust regex's Unicode \\w: Alphabetic, M, Nd, Pc,
                       Join_Control (only the added-token `single_word` check)

Python's unicodedata has no White_Space or Alphabetic property, so those
come from PropList.txt lists written out below; they change very rarely.
The output records unicodedata's Unicode version: regenerating with another
Python may change the tables, which is why the generated file is committed.
"""
import sys
import unicodedata

MAX_CP = 0x10FFFF

# PropList.txt White_Space (unchanged since Unicode 6.3, when U+180E left).
WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0),
               (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029),
               (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]

# Alphabetic = L + Nl + Other_Alphabetic. Other_Alphabetic is mostly marks
# (already in \w through M); these are its members outside M: the circled
# and squared Latin letters (So).
OTHER_ALPHABETIC_NOT_MARK = [(0x24B6, 0x24E9), (0x1F130, 0x1F149),
                             (0x1F150, 0x1F169), (0x1F170, 0x1F189)]
JOIN_CONTROL = [(0x200C, 0x200D)]


def ranges_of(pred):
    out = []
    start = None
    for cp in range(MAX_CP + 2):
        inside = cp <= MAX_CP and pred(cp)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def in_ranges(ranges):
    s = set()
    for a, b in ranges:
        s.update(range(a, b + 1))
    return s


def cat(cp):
    return unicodedata.category(chr(cp))


def wrap(items):
    line = "   "
    for item in items:
        if len(line) + 1 + len(item) > 96:
            print(line)
            line = "   "
        line += " " + item
    print(line)


def emit(name, ranges, comment):
    print(f"/* {comment}: {len(ranges)} ranges */")
    print(f"static const uint32_t {name}[][2] = {{")
    wrap(f"{{0x{a:X}, 0x{b:X}}}," for a, b in ranges)
    print("};")
    print()


def emit_nfc():
    """Tables for NFC (the Qwen2 normalizer): canonical combining classes,
    full canonical decompositions, and the primary composites. Hangul
    syllables are algorithmic and left out."""
    ccc = []  # (first, last, class)
    for cp in range(MAX_CP + 1):
        c = unicodedata.combining(chr(cp))
        if not c:
            continue
        if ccc and ccc[-1][1] == cp - 1 and ccc[-1][2] == c:
            ccc[-1][1] = cp
        else:
            ccc.append([cp, cp, c])
    decomp = []  # (cp, offset, length) into data
    data = []
    comp = []  # (first, second, composite)
    for cp in range(MAX_CP + 1):
        if 0xAC00 <= cp <= 0xD7A3 or 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        nfd = unicodedata.normalize("NFD", ch)
        if nfd != ch:
            decomp.append((cp, len(data), len(nfd)))
            data.extend(ord(x) for x in nfd)
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            if len(parts) == 2 and unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == ch:
                comp.append((parts[0], parts[1], cp))
    comp.sort()
    assert max(n for _, _, n in decomp) < 256 and len(data) < 65536
    print(f"/* canonical combining classes: {len(ccc)} ranges */")
    print("static const uint32_t ccc_table[][3] = {")
    wrap(f"{{0x{a:X}, 0x{b:X}, {c}}}," for a, b, c in ccc)
    print("};")
    print()
    print(f"/* full canonical decompositions: {len(decomp)} code points */")
    print("static const uint32_t decomp_table[][2] = { /* cp, offset << 8 | length */")
    wrap(f"{{0x{cp:X}, {off} << 8 | {n}}}," for cp, off, n in decomp)
    print("};")
    print("static const uint32_t decomp_data[] = {")
    wrap(f"0x{x:X}," for x in data)
    print("};")
    print()
    print(f"/* primary composites: {len(comp)} pairs, sorted */")
    print("static const uint32_t comp_table[][3] = {")
    wrap(f"{{0x{a:X}, 0x{b:X}, 0x{c:X}}}," for a, b, c in comp)
    print("};")
    print()


def main():
    letter = ranges_of(lambda cp: cat(cp)[0] == "L")
    number = ranges_of(lambda cp: cat(cp)[0] == "N")
    extra = in_ranges(OTHER_ALPHABETIC_NOT_MARK + JOIN_CONTROL)
    word = ranges_of(lambda cp: cat(cp)[0] in "LM" or cat(cp) in ("Nd", "Nl", "Pc")
                     or cp in extra)
    space = WHITE_SPACE

    print("/* Generated by scripts/gen_unicode_tables.py from Python's unicodedata,")
    print(f" * Unicode {unicodedata.unidata_version}. Do not edit by hand. */")
    print('#include "airllm_unicode.h"')
    print()
    print("#include <stddef.h>")
    print()
    print(f'const char airllm_unicode_version[] = "{unicodedata.unidata_version}";')
    print()
    emit("letter", letter, "\\p{L}: Lu Ll Lt Lm Lo")
    emit("number", number, "\\p{N}: Nd Nl No")
    emit("space", space, "\\s: White_Space")
    emit("word", word, "\\w: Alphabetic, M, Nd, Pc, Join_Control")
    emit_nfc()
    print("""static int in_table(const uint32_t (*t)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < t[mid][0])
            hi = mid;
        else if (cp > t[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

#define IN(t, cp) in_table(t, sizeof(t) / sizeof(t[0]), cp)

int airllm_uni_is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return IN(letter, cp);
}

int airllm_uni_is_number(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    return IN(number, cp);
}

int airllm_uni_is_space(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
    return IN(space, cp);
}

int airllm_uni_ccc(uint32_t cp)
{
    if (cp < 0x300)
        return 0;
    size_t lo = 0, hi = sizeof ccc_table / sizeof ccc_table[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < ccc_table[mid][0])
            hi = mid;
        else if (cp > ccc_table[mid][1])
            lo = mid + 1;
        else
            return (int)ccc_table[mid][2];
    }
    return 0;
}

size_t airllm_uni_decompose(uint32_t cp, const uint32_t **out)
{
    size_t lo = 0, hi = sizeof decomp_table / sizeof decomp_table[0];
    if (cp < 0xC0)
        return 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < decomp_table[mid][0])
            hi = mid;
        else if (cp > decomp_table[mid][0])
            lo = mid + 1;
        else {
            *out = decomp_data + (decomp_table[mid][1] >> 8);
            return decomp_table[mid][1] & 0xFF;
        }
    }
    return 0;
}

uint32_t airllm_uni_compose(uint32_t a, uint32_t b)
{
    size_t lo = 0, hi = sizeof comp_table / sizeof comp_table[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *e = comp_table[mid];
        if (a < e[0] || (a == e[0] && b < e[1]))
            hi = mid;
        else if (a > e[0] || b > e[1])
            lo = mid + 1;
        else
            return e[2];
    }
    return 0;
}

int airllm_uni_is_word(uint32_t cp)
{
    if (cp < 0x80)
        return ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9') || cp == '_';
    return IN(word, cp);
}""")


if __name__ == "__main__":
    sys.exit(main())
