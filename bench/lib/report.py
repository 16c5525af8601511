"""Renders bench/run's raw result lines as the markdown report: the summary against the
issue's targets first, then every target's medians and runs.

    python3 report.py META.json RESULTS.jsonl "LOADAVG AT END" "SETTINGS"
"""

import json
import math
import statistics
import sys
from collections import defaultdict

ROW_TITLES = {
    1: "static files: kpages-router vs nginx",
    2: "function proxy: hello-world through a proxy vs the Node host hit directly",
    3: "Node function host hello-world vs bare `node:http`",
    4: "background functions: 202 latency and jobs/s into JetStream",
    5: "redeploy of a 10,000-file site after changing 1 file vs first deploy",
    6: "cold start from zero replicas (testbed)",
    7: "operator: 1,000 Sites with Deploys to Ready (testbed)",
}


def ms(us):
    return f"{us / 1000:.2f} ms"


def num(x):
    return f"{x:,.0f}"


def verdict(ok):
    return "PASS" if ok else "MISS"


def medians(lines):
    """Median rps/p50/p90/p99 and CPU per (row, case, target), in first-seen order."""
    groups = defaultdict(list)
    order = []
    for line in lines:
        key = (line["row"], line["case"], line["target"])
        if key not in groups:
            order.append(key)
        groups[key].append(line)
    out = {}
    for key in order:
        runs = groups[key]
        cpu_names = runs[0]["cpu_pct"].keys()
        out[key] = {
            "runs": runs,
            "rps": statistics.median(r["wrk"]["rps"] for r in runs),
            "p50": statistics.median(r["wrk"]["p50_us"] for r in runs),
            "p90": statistics.median(r["wrk"]["p90_us"] for r in runs),
            "p99": statistics.median(r["wrk"]["p99_us"] for r in runs),
            "cpu": {n: statistics.median(r["cpu_pct"][n] for r in runs) for n in cpu_names},
        }
    return out


def cpu_per_request(s, name):
    """Microseconds of CPU the named process spent per request (median CPU share / median rate)."""
    return s["cpu"][name] / 100 * 1e6 / s["rps"]


def quantile(xs, p):
    """Nearest-rank quantile: the smallest value with at least p of the values at or below it."""
    v = sorted(xs)
    return v[max(0, math.ceil(p * len(v)) - 1)]


def secs(x):
    return f"{x:.2f} s" if x >= 1 else f"{x * 1000:.1f} ms"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def cold_start_rows(cold):
    c = [l["seconds"] for l in cold if l["phase"] == "cold"]
    w = [l["seconds"] for l in cold if l["phase"] == "warm"]
    if not (c and w):
        return []
    return [
        ["6", f"cold start: first response from zero replicas, p50 / p95 ({len(c)} cold starts)",
         f"{secs(quantile(c, 0.5))} / {secs(quantile(c, 0.95))}",
         f"warm {secs(quantile(w, 0.5))} / {secs(quantile(w, 0.95))} ({len(w)} requests)",
         f"{quantile(c, 0.5) / quantile(w, 0.5):,.0f}× warm p50", "p50 / p95 (report)", ""],
        ["6", "cold start: min / max", f"{secs(min(c))} / {secs(max(c))}",
         f"warm {secs(min(w))} / {secs(max(w))}", "—", "(report)", ""],
    ]


def operator_rows(rounds):
    rows = []
    for r in rounds:
        what = (f"{r['sites']:,} Sites with static Deploys" if not r["function_deploys"] else
                f"{r['sites']:,} Sites, {r['function_deploys']:,} with function Deploys (idle to zero: ≥ 30 s)")
        rows.append(["7", f"operator: {what} to Ready: time", secs(r["seconds"]), "—",
                     f"created in {r['create_seconds']:.1f} s ({r['concurrency']} at a time); "
                     f"{r['sites'] / r['seconds']:.1f} Sites/s", "time (report)", ""])
        rows.append(["7", f"operator: {what}: peak RSS (VmHWM)", mib(r["operator_peak_rss_kib"]), "—",
                     f"idle {mib(r['operator_idle_rss_kib'])}; CPU {r['operator_cpu_seconds']:.1f} s",
                     "peak RSS (report)", ""])
    return rows


def summary_rows(m, deploys, skips, queue, cold, rounds):
    rows = []
    for case in ("static 1k", "static 100k"):
        k, n = m.get((1, case, "kpages")), m.get((1, case, "nginx"))
        if not (k and n):
            continue
        size = "1 KiB" if case.endswith("1k") else "100 KiB"
        r = k["rps"] / n["rps"]
        rows.append(["1", f"static {size}: req/s", num(k["rps"]), f"nginx {num(n['rps'])}",
                     f"{r:.2f}×", "≥ 1.20× nginx", verdict(r >= 1.2)])
        kc, nc = cpu_per_request(k, "router-static"), cpu_per_request(n, "nginx-static")
        rows.append(["1", f"static {size}: server CPU per request", f"{kc:.0f} µs", f"nginx {nc:.0f} µs",
                     f"{kc / nc:.2f}×", "(diagnostic)", ""])
        r = k["p99"] / n["p99"]
        rows.append(["1", f"static {size}: p50 / p99", f"{ms(k['p50'])} / {ms(k['p99'])}",
                     f"nginx {ms(n['p50'])} / {ms(n['p99'])}", f"p99 {r:.2f}×", "p99 ≤ nginx",
                     verdict(k["p99"] <= n["p99"])])
    d, k, n = (m.get((2, "function hello", t)) for t in ("direct", "kpages", "nginx"))
    if d and k:
        added = (k["p50"] - d["p50"]) / 1000
        peer = f"nginx +{(n['p50'] - d['p50']) / 1000:.2f} ms" if n else "—"
        rows.append(["2", "function proxy: added p50", f"+{added:.2f} ms", peer,
                     f"direct p50 {ms(d['p50'])}", "≤ +0.20 ms", verdict(added <= 0.2)])
        r = k["rps"] / d["rps"]
        peer = f"direct {num(d['rps'])}" + (f"; nginx {num(n['rps'])} ({n['rps'] / d['rps']:.2f}×)" if n else "")
        rows.append(["2", "function proxy: req/s", num(k["rps"]), peer, f"{r:.2f}×",
                     "≥ 0.95× direct", verdict(r >= 0.95)])
    h, b = m.get((3, "hello world", "kpages host")), m.get((3, "hello world", "bare node"))
    if h and b:
        r = h["rps"] / b["rps"]
        rows.append(["3", "Node host hello-world: req/s", num(h["rps"]), f"bare node {num(b['rps'])}",
                     f"{r:.2f}×", "≥ 0.85× bare", verdict(r >= 0.85)])
        rows.append(["3", "Node host hello-world: p50 / p99", f"{ms(h['p50'])} / {ms(h['p99'])}",
                     f"bare node {ms(b['p50'])} / {ms(b['p99'])}", f"p99 {h['p99'] / b['p99']:.2f}×",
                     "(no target)", ""])
    q = m.get((4, "background 202", "kpages"))
    lat = next((v for (row, case, t), v in m.items() if row == 4 and case != "background 202"), None)
    if q:
        stored = (f"; stream holds {queue['stored']:,} for {queue['accepted']:,} 202s counted"
                  if queue else "")
        rows.append(["4", f"background jobs/s into JetStream (202/s, {q['runs'][0].get('conns', 50)} connections)",
                     num(q["rps"]), "—",
                     f"CPU per job: router {cpu_per_request(q, 'router-bg'):.0f} µs + nats "
                     f"{cpu_per_request(q, 'nats'):.0f} µs{stored}",
                     "≥ 5,000 jobs/s", verdict(q["rps"] >= 5000)])
        rows.append(["4", f"background 202 p50 / p99 at {q['runs'][0].get('conns', 50)} connections",
                     f"{ms(q['p50'])} / {ms(q['p99'])}", "—", "(saturated: mostly queueing)",
                     "(report)", ""])
    if lat:
        rows.append(["4", f"background 202 p50 / p99 at {lat['runs'][0].get('conns', 8)} connections",
                     f"{ms(lat['p50'])} / {ms(lat['p99'])}", "—", f"{num(lat['rps'])} jobs/s",
                     "p99 ≤ 5 ms", verdict(lat["p99"] <= 5000)])
    first, re = deploys.get("first"), deploys.get("redeploy")
    if first and re:
        fu, ru = first["upload"], re["upload"]
        sent = lambda u: (f"{u['missing']:,} blob{'' if u['missing'] == 1 else 's'} + "
                          f"{'manifest' if u['manifest_uploaded'] else 'no manifest'}")
        rows.append(["5", f"redeploy ({re['files']:,} files, 1 changed): blobs uploaded", sent(ru),
                     f"first deploy {sent(fu)}", f"{ru['missing']:,} of {ru['blobs']:,}",
                     "1 blob + manifest", verdict(ru["missing"] == 1 and ru["manifest_uploaded"])])
        ft = first["build_seconds"] + first["upload_seconds"]
        rt = re["build_seconds"] + re["upload_seconds"]
        rows.append(["5", "redeploy: build + upload time",
                     f"{rt:.1f} s ({re['build_seconds']:.1f} + {re['upload_seconds']:.1f})",
                     f"first deploy {ft:.1f} s ({first['build_seconds']:.1f} + {first['upload_seconds']:.1f})",
                     f"{rt / ft:.2f}×", "(report)", ""])
        if "checked" in ru:
            rows.append(["5", "redeploy: existence checks (HEAD)", f"{ru['checked']:,}",
                         f"first deploy {fu.get('checked', fu['blobs']):,}",
                         f"{ru['known']:,} known from the first deploy's manifest", "(report)", ""])
        rows.append(["5", "redeploy: time to Ready", "not measured in this run",
                     "—", "—", "(report)", "needs the testbed"])
    rows += cold_start_rows(cold)
    rows += operator_rows(rounds)
    for row, why in sorted(skips.items()):
        rows.append([str(row), ROW_TITLES[row], f"not measured in this run: {why}", "", "", "", "—"])
    return rows


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main():
    meta = json.load(open(sys.argv[1]))
    lines = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
    load_end, settings = sys.argv[3], sys.argv[4]
    m = medians([l for l in lines if l["kind"] == "http"])
    deploys = {l["phase"]: l for l in lines if l["kind"] == "deploy"}
    skips = {l["row"]: l["why"] for l in lines if l["kind"] == "skip"}
    queue = next((l for l in lines if l["kind"] == "queue"), None)
    cold = [l for l in lines if l["kind"] == "coldstart"]
    rounds = [l for l in lines if l["kind"] == "operator"]

    print(f"# kpages benchmarks — {meta['date']}\n")
    print("Produced by `bench/run` (see [bench/README.md](../README.md) for methodology). "
          "Peers ran in the same run, interleaved, on the same machine; ratios are what to read, "
          "absolute numbers move with the machine's other load.\n")
    print("## Against the targets\n")
    print(table(["#", "what", "kpages", "peer", "ratio", "target", "verdict"],
                summary_rows(m, deploys, skips, queue, cold, rounds)))
    print("\n## Machine and versions\n")
    facts = [
        ("CPU", f"{meta['cpu']}, {meta['cores']} cores (server on core 0, wrk on core 1)"),
        ("memory", meta["mem"]), ("OS / kernel", f"{meta['os']} / {meta['kernel']}"),
        ("kpages", f"commit {meta['commit']}, release build"), ("rustc", meta["rustc"]),
        ("nginx", meta["nginx"]), ("wrk", meta["wrk"]), ("Node.js", meta["node"]),
        ("load average at start / end", f"{meta['loadavg']} / {load_end}"),
        ("settings", settings),
    ]
    print(table(["", ""], [[k, v] for k, v in facts]))
    if m:
        print("\n## HTTP rows: medians per target\n")
        print("CPU is the share of one core each named process used during the measured runs "
              "(median), and that share divided by the request rate: CPU time per request, the "
              "efficiency figure least moved by the machine's other load. On this shared box "
              "no process gets a whole core (other jobs, in other cgroups, take their share "
              "whatever our nice level), so shares well under 100 % are expected.\n")
        rows = []
        for (row, case, target), s in m.items():
            cpu = ", ".join(f"{n} {c:.0f} % ({cpu_per_request(s, n):.0f} µs/req)" for n, c in s["cpu"].items())
            runs = " / ".join(num(r["wrk"]["rps"]) for r in s["runs"])
            rows.append([str(row), case, target, num(s["rps"]), ms(s["p50"]), ms(s["p90"]),
                         ms(s["p99"]), cpu, runs])
        print(table(["#", "case", "target", "req/s", "p50", "p90", "p99", "CPU", "req/s of each run"], rows))
    if deploys:
        print("\n## Row 5: deploys to MinIO\n")
        rows = []
        for phase, d in deploys.items():
            u = d["upload"]
            rows.append([phase, f"{d['files']:,}", f"{d['build_seconds']:.2f} s",
                         f"{u.get('checked', u['blobs']):,}",
                         f"{u['check_seconds']:.2f} s", f"{d['upload_seconds']:.2f} s",
                         f"{u['missing']:,} of {u['blobs']:,}", "yes" if u["manifest_uploaded"] else "no"])
        print(table(["phase", "files", "kpages build", "HEADs", "existence check", "upload (check + send, incl. process start)",
                     "blobs sent", "manifest sent"], rows))

    if cold:
        print_cold_starts(cold)
    if rounds:
        print_operator_rounds(rounds)


STEPS = [("scaled_up", "Deployment scaled up"), ("pod_created", "pod created"),
         ("pod_scheduled", "scheduled"), ("init_started", "init container running"),
         ("pod_initialized", "bundles fetched (init done)"), ("host_started", "Node host running"),
         ("pod_ready", "pod Ready")]


def print_cold_starts(cold):
    setup = next((l for l in cold if l["phase"] == "setup"), {})
    c = [l for l in cold if l["phase"] == "cold"]
    w = [l["seconds"] for l in cold if l["phase"] == "warm"]
    print("\n## Row 6: cold start\n")
    print(f"One Site (`scaleToZeroAfterSeconds: {setup.get('scale_to_zero_after_seconds', '?')}`) with one "
          "Netlify v2 hello-world function, deployed with `kpages deploy --prod` to the helm-installed "
          f"chart on the testbed ({setup.get('router_replicas', '?')} router replica). Client: "
          f"{setup.get('client', '?')}. Each cold request was sent once the operator had scaled the "
          "deploy to zero and its last pod was gone; the steps are when this benchmark's watches saw "
          "each one, counted from sending the request.\n")
    if w:
        print(f"Warm: {len(w)} requests, p50 {secs(quantile(w, 0.5))}, p95 {secs(quantile(w, 0.95))}, "
              f"min {secs(min(w))}, max {secs(max(w))}.\n")
    rows = []
    for l in c:
        st = l.get("steps", {})
        rows.append([str(l["n"]), f"{l['idle_seconds']:.0f} s"]
                    + [f"+{st[k]:.2f} s" if st.get(k) is not None else "—" for k, _ in STEPS]
                    + [f"{l['first_byte_seconds']:.2f} s", f"**{l['seconds']:.2f} s**"])
    if c:
        med = lambda k: statistics.median(l["steps"][k] for l in c if l["steps"].get(k) is not None)
        rows.append(["median", ""] + [f"+{med(k):.2f} s" if any(l["steps"].get(k) is not None for l in c) else "—"
                                      for k, _ in STEPS]
                    + [f"{statistics.median(l['first_byte_seconds'] for l in c):.2f} s",
                       f"**{statistics.median(l['seconds'] for l in c):.2f} s**"])
    print(table(["#", "idle before"] + [t for _, t in STEPS] + ["first byte", "response"], rows))


def print_operator_rounds(rounds):
    print("\n## Row 7: operator at scale\n")
    print("kpages-operator (the image's static release binary) ran as a host process against the "
          "testbed's apiserver (through its loopback forwarder), watching only the round's namespace, "
          "with manifests in a MinIO on loopback. Times count from the first create; done means every "
          "Deploy is `Ready` and every Site's `status.activeDeploy` names its Deploy with `Ready` true. "
          "Peak RSS is the kernel's VmHWM of the process.\n")
    for r in rounds:
        print(f"- **{r['round']}**: {r['what']}.")
    print()
    rows = []
    for r in rounds:
        rec = r["reconciles_at_done"]
        recs = ", ".join(f"{k.split(' ', 1)[1]} {v:,.0f}" for k, v in rec.items() if k.startswith("reconciles "))
        errs = ", ".join(f"{k.split(' ', 1)[1]} {v:,.0f}" for k, v in rec.items() if k.startswith("errors ")) or "none"
        rows.append([r["round"], f"{r['create_seconds']:.1f} s", secs(r["all_deploys_ready_seconds"]),
                     secs(r["all_sites_active_seconds"]), mib(r["operator_peak_rss_kib"]),
                     f"{mib(r['operator_idle_rss_kib'])} / {mib(r['operator_rss_at_done_kib'])} / "
                     f"{mib(r['operator_rss_after_settle_kib'])}",
                     f"{r['operator_cpu_seconds']:.1f} s", f"{r['operator_settle_cpu_seconds_per_10s']:.2f} s",
                     testbed_cpu(r), recs, errs])
    print(table(["round", "creates", "all Deploys Ready", "all Sites active", "peak RSS",
                 "RSS idle / done / +10 s", "operator CPU", "operator CPU in the 10 s after",
                 "testbed CPU in the round", "reconciles", "errors"], rows))
    for r in rounds:
        objects = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in r["objects"].items())
        print(f"\n**{r['round']}**: objects in the namespace at the end: {objects}.\n")
        reqs = sorted(r["apiserver_requests"].items(), key=lambda kv: -kv[1]["requests"])
        print(table(["API server requests during the round (all clients)", "count", "bytes answered (reads)"],
                    [[k, f"{v['requests']:,.0f}",
                      f"{v['response_bytes'] / 1e6:,.1f} MB" if v["response_bytes"] else ""] for k, v in reqs]))


def testbed_cpu(r):
    cpu = r.get("testbed_cpu_seconds", {})
    return ", ".join(f"{k} {v:.1f} s" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])) or "—"


if __name__ == "__main__":
    main()
