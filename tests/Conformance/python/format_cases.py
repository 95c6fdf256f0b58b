#!/usr/bin/python3
"""Rewrites tests/Conformance/cases/*.json and tests/Conformance/virtio-net/cases/*.json in the house layout: one step per line (a step with
nested 'while' steps gets one line per nested step). Content is unchanged.

    /usr/bin/python3 tests/Conformance/python/format_cases.py [--check]
"""
import json
import sys
from pathlib import Path

CASES = Path(__file__).resolve().parent.parent / "cases"
VIRTIO_CASES = Path(__file__).resolve().parent.parent / "virtio-net" / "cases"


def one(v):
    return json.dumps(v, ensure_ascii=False)


def step_lines(step, indent):
    """A step on one line; its nested list ('while' steps or 'requests') one item per line."""
    pad = " " * indent
    nested = next((k for k in ("while", "requests") if k in step), None)
    if nested is None:
        return [pad + one(step)]
    head = {k: v for k, v in step.items() if k not in (nested, "expect")}
    lines = [pad + one(head)[:-1] + f', "{nested}": [']
    lines += [",\n".join(pad + "  " + one(s) for s in step[nested])]
    tail = "]" + (', "expect": ' + one(step["expect"]) if "expect" in step else "") + "}"
    lines.append(pad + tail)
    return ["\n".join(lines)]


def render(doc):
    out = ["{"]
    if "description" in doc:
        out.append(f'  "description": {one(doc["description"])},')
    out.append('  "cases": [')
    cases = []
    for c in doc["cases"]:
        body = ["    {"]
        for k in c:
            if k != "steps":
                body.append(f'      {one(k)}: {one(c[k])},')
        body.append('      "steps": [')
        body.append(",\n".join(line for s in c["steps"] for line in step_lines(s, 8)))
        body.append("      ]")
        body.append("    }")
        cases.append("\n".join(body))
    out.append(",\n".join(cases))
    out.append("  ]")
    out.append("}")
    return "\n".join(out) + "\n"


def main():
    check = "--check" in sys.argv
    bad = []
    for p in sorted(CASES.glob("*.json")) + sorted(VIRTIO_CASES.glob("*.json")):
        text = p.read_text()
        doc = json.loads(text)
        new = render(doc)
        assert json.loads(new) == doc, p
        if new != text:
            bad.append(p.name)
            if not check:
                p.write_text(new)
    if check and bad:
        print("not in house layout: " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
