"""Compare every old metrics.json key of a run (through semlab.metrics.keys.OLD_TO_NEW) with
the metrics.json of a newer run: python tools/compare_runs.py BEFORE_RUN AFTER_RUN."""
import json
import math
import sys
from pathlib import Path

from semlab.metrics.keys import OLD_TO_NEW, translate_old


def run_dir(p):
    p = Path(p)
    return p if (p / "manifest.json").is_file() else sorted(d for d in p.iterdir() if d.is_dir())[-1]


def lookup(doc, new):
    """(value, metric dict or None, found)."""
    if new == "n":
        return doc["n"], None, True
    if new.startswith("extra."):
        cur = doc.get("extra", {})
        parts = new[6:].split(".")
        # keys of extra.unavailable contain dots: take the rest as one key
        if parts[0] == "unavailable":
            v = cur.get("unavailable", {}).get(".".join(parts[1:]))
            return v, None, v is not None
        for i, part in enumerate(parts):
            if not isinstance(cur, dict) or part not in cur:
                rest = ".".join(parts[i:])
                if isinstance(cur, dict) and rest in cur:
                    return cur[rest], None, True
                return None, None, False
            cur = cur[part]
        return cur, None, True
    key, _, field = new.partition(":")
    m = doc["metrics"].get(key)
    if m is None:
        why = doc.get("extra", {}).get("unavailable", {}).get(key)
        return why, None, False
    return m[field or "value"], m, True


def same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def main(before, after):
    before, after = run_dir(before), run_dir(after)
    counts = {}
    print(f"{'notebook':<20} {'old key':<48} {'new key':<48} {'old':>12} {'new':>12}  verdict")
    for nb in OLD_TO_NEW:
        old_p, new_p = before / nb / "metrics.json", after / nb / "metrics.json"
        if not new_p.is_file():
            new_p = after / f"{nb}[sim]" / "metrics.json"
        if not old_p.is_file() or not new_p.is_file():
            print(f"{nb}: missing metrics.json ({old_p.is_file()=}, {new_p.is_file()=})")
            continue
        old, new = json.loads(old_p.read_text()), json.loads(new_p.read_text())
        from semlab.metrics.keys import flatten_old
        flat = flatten_old(old)
        tr = translate_old(nb, old)
        olds = dict(zip(tr, flat))  # translate_old keeps the order of flatten_old
        for nk, ov in tr.items():
            nv, m, found = lookup(new, nk)
            if nk.startswith("?"):
                verdict = "UNMAPPED"
            elif ov is None or (isinstance(ov, float) and math.isnan(ov)):
                verdict = "identical (no value; new: unavailable)" if not found or nv is None else "DIFF (new has a value)"
            elif nk.startswith("extra.unavailable."):
                verdict = "identical (unavailable, reason kept)" if found and str(nv) in str(ov) else "DIFF"
            elif not found:
                verdict = "MISSING"
            elif same(ov, nv):
                verdict = "identical"
            elif (m and isinstance(ov, (int, float)) and m.get("ci_low") is not None and m.get("ci_high") is not None
                  and m["ci_low"] <= ov <= m["ci_high"]):
                verdict = "within CI"
            else:
                verdict = "DIFF"
            counts[verdict.split(" ")[0]] = counts.get(verdict.split(" ")[0], 0) + 1
            fmt = lambda v: (f"{v:.6g}" if isinstance(v, float) else str(v))[:12]
            print(f"{nb:<20} {olds[nk][:48]:<48} {nk[:48]:<48} {fmt(ov):>12} {fmt(nv):>12}  {verdict}")
    print(counts)


if __name__ == "__main__":
    main(*sys.argv[1:3])
