#!/usr/bin/env python3
"""Builds golden/<stage>.jsonl from the grade-free items (golden/items/) and each rater's
independent grades (golden/ratings/<rater>.jsonl). Rerun after adding a rater or an item.
Fails loudly on an item without at least two raters or a rating for an unknown item."""
import json, pathlib, sys, collections

root = pathlib.Path(__file__).resolve().parent.parent / "golden"
ratings = collections.defaultdict(list)
for f in sorted((root / "ratings").glob("*.jsonl")):
    for n, line in enumerate(f.read_text().splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        ratings[r["id"]].append({"rater": r["rater"], "scores": r["scores"], "flags": r.get("flags", [])})
seen = set()
for items in sorted((root / "items").glob("*.jsonl")):
    out = []
    for line in items.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        grades = sorted(ratings.get(item["id"], []), key=lambda g: g["rater"])
        if len(grades) < 2:
            sys.exit(f"{item['id']}: {len(grades)} rater(s); need at least 2")
        item["grades"] = grades
        seen.add(item["id"])
        out.append(json.dumps(item, ensure_ascii=False))
    (root / items.name).write_text("\n".join(out) + "\n")
    print(f"{items.name}: {len(out)} items")
unknown = set(ratings) - seen
if unknown:
    sys.exit(f"ratings for unknown items: {sorted(unknown)}")
