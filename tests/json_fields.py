#!/usr/bin/env python3
"""Checks --json output against the field tables of docs/json.md.

    json_fields.py DOC --examples      the doc's own example lines
    json_fields.py DOC FILE...         every line of each FILE

Each table in DOC follows a marker
    <!-- json-fields tool=T1,T2|* type=summary|plan|result|* status=S1,S2|* -->
and has rows | `field` | type | present | meaning |. An object is checked
against every table whose tool, type and status match it: each field marked
"always" (under a parent that is present) must be there with its type, and
every field the object carries must be listed in one of those tables. So
the doc and the tools cannot drift apart without this failing. Each line
must be one compact JSON object (JSON Lines). Exits 1 and prints each
problem if any.
"""
import json
import re
import sys

MARK = re.compile(r"<!--\s*json-fields\s+tool=(\S+)\s+type=(\S+)\s+status=(\S+)\s*-->")
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|")


def parse_doc(path):
    tables, cur = [], None
    for line in open(path, encoding="utf-8"):
        m = MARK.search(line)
        if m:
            cur = {"tool": m.group(1).split(","), "type": m.group(2).split(","),
                   "status": m.group(3).split(","), "rows": {}}
            tables.append(cur)
            continue
        if cur is None:
            continue
        r = ROW.match(line.strip())
        if r:
            cur["rows"][r.group(1)] = (r.group(2), r.group(3) == "always")
        elif not line.strip().startswith("|") and cur["rows"]:
            cur = None  # the table ended
    if not tables:
        sys.exit(f"{path}: no json-fields tables")
    return tables


def examples(path):
    out, inside = [], False
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.startswith("```json"):
            inside = True
        elif line.startswith("```"):
            inside = False
        elif inside and line.strip():
            out.append((f"{path}:{n}", line.rstrip("\n")))
    return out


def type_ok(v, t):
    ok = {
        "string": lambda: isinstance(v, str),
        "boolean": lambda: isinstance(v, bool),
        "integer": lambda: (isinstance(v, int) and not isinstance(v, bool)) or
                           (isinstance(v, float) and v.is_integer()),
        "number": lambda: isinstance(v, (int, float)) and not isinstance(v, bool),
        "array": lambda: isinstance(v, list),
        "object": lambda: isinstance(v, dict),
        "null": lambda: v is None,
    }
    return any(ok[a.strip()]() for a in t.split(" or "))


def flatten(obj, prefix=""):
    """(path, value) for every field: a.b inside objects, a[] for elements."""
    for k, v in obj.items():
        p = prefix + k
        yield p, v
        if isinstance(v, dict):
            yield from flatten(v, p + ".")
        elif isinstance(v, list):
            for e in v:
                if isinstance(e, dict):
                    yield from flatten(e, p + "[].")
                else:
                    yield p + "[]", e


def present(obj, path):
    """Whether path's parent exists (and so whether "always" applies), and
    the values found at path: one per element for paths through arrays."""
    parts = re.split(r"\.", path)
    vals = [obj]
    for i, part in enumerate(parts):
        arr = part.endswith("[]")
        key = part[:-2] if arr else part
        nxt, missing = [], 0
        for v in vals:
            if not isinstance(v, dict):
                continue
            if key not in v:
                # a[] describes a's elements: a missing is a's business
                missing += not (arr and i == len(parts) - 1)
                continue
            if arr:
                nxt.extend(v[key] if isinstance(v[key], list) else [])
            else:
                nxt.append(v[key])
        if i == len(parts) - 1:
            return missing, nxt
        vals = nxt
    return 0, vals


def check(obj, tables, where):
    errs = []
    if not isinstance(obj, dict):
        return [f"{where}: not a JSON object"]
    for k in ("tool", "type", "status"):
        if not isinstance(obj.get(k), str):
            return [f"{where}: no {k}"]
    mine = [t for t in tables
            if ("*" in t["tool"] or obj["tool"] in t["tool"]) and
            ("*" in t["type"] or obj["type"] in t["type"]) and
            ("*" in t["status"] or obj["status"] in t["status"])]
    rows = {}
    for t in mine:
        rows.update(t["rows"])
    for path, (typ, always) in rows.items():
        missing, vals = present(obj, path)
        if always and missing:
            errs.append(f"{where}: {obj['tool']} {obj['type']}: no `{path}`")
        for v in vals:
            if not type_ok(v, typ):
                errs.append(f"{where}: `{path}` is {json.dumps(v)[:40]}, not {typ}")
    for path, _ in flatten(obj):
        if path not in rows:
            errs.append(f"{where}: {obj['tool']} {obj['type']} {obj['status']}: "
                        f"`{path}` is not in docs/json.md")
    return sorted(set(errs))


def check_line(line, tables, where):
    if not line.startswith("{") or not line.endswith("}"):
        return [f"{where}: not one compact object on a line: {line[:80]!r}"]
    try:
        obj = json.loads(line)
    except ValueError as e:
        return [f"{where}: does not parse: {e}: {line[:80]!r}"]
    if re.search(r"\s", re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)):
        return [f"{where}: not compact (white space between tokens)"]
    return check(obj, tables, where)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    tables = parse_doc(sys.argv[1])
    errs, n = [], 0
    if sys.argv[2] == "--examples":
        for where, line in examples(sys.argv[1]):
            n += 1
            errs += check_line(line, tables, where)
    else:
        for f in sys.argv[2:]:
            text = open(f, encoding="utf-8").read()
            if not text.endswith("\n"):
                errs.append(f"{f}: the output does not end with a newline")
            for i, line in enumerate(text.splitlines(), 1):
                n += 1
                errs += check_line(line, tables, f"{f}:{i}")
    for e in errs:
        print(e)
    if not n:
        print("no lines to check")
        return 1
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
