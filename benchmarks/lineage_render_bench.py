"""Time the lineage views on a synthetic 200-model lineage graph.

Builds, in memory, a lineage ``networkx.DiGraph`` of 200 model lines (several root models, a few
versions per line, finetunes, adapters, distillations, prunes, quantizations and 2-3-way merges),
then times ``entries_from_graph`` + ``graph_log``, ``to_dot``, ``to_json`` and ``to_html``.

Run: ``python benchmarks/lineage_render_bench.py [--models 200] [--repeat 5] [--html out.html]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx

from mgit.lineage.render import entries_from_graph, graph_log, to_dot, to_html, to_json

__all__ = ["synthetic_lineage", "main"]

_DERIVATIONS = [
    "finetune",
    "finetune",
    "finetune",
    "adapter",
    "distill",
    "prune",
    "quantize",
    "other",
]
_ROOTS = ["bert-base", "llama-7b", "t5-small", "vit-b16", "whisper-tiny", "resnet50"]
_TASKS = ["sst2", "mnli", "squad", "imdb", "cifar10", "librispeech", "code", "chat", "ner", "xsum"]


def _oid(k: int) -> str:
    return hashlib.sha256(f"commit-{k}".encode()).hexdigest()


def synthetic_lineage(models: int = 200, *, seed: int = 7) -> nx.DiGraph[str]:
    """Return a synthetic lineage graph with ``models`` model lines.

    Args:
        models: Number of model lines.
        seed: Random seed; the graph is deterministic for a given seed.

    Returns:
        The graph, with every node and edge attribute the views read.
    """
    rnd = random.Random(seed)
    g: nx.DiGraph[str] = nx.DiGraph()
    t = 1_700_000_000.0
    count = 0
    lines: dict[str, list[str]] = {}

    def commit(model: str, parents: list[tuple[str, str]], message: str) -> str:
        nonlocal t, count
        oid = _oid(count)
        count += 1
        t += rnd.uniform(60, 7200)
        g.add_node(
            oid,
            model=model,
            short=oid[:12],
            message=message,
            author=rnd.choice(["ana", "bo", "chen", "dee"]) + "@lab.example",
            time=t,
            meta={
                "task": rnd.choice(_TASKS),
                "metrics": json.dumps({"acc": round(rnd.random(), 3)}),
            },
            tags=[],
            heads=[],
            lossy=rnd.random() < 0.1,
            logical_bytes=rnd.randint(10**7, 10**10),
        )
        for index, (parent, relation) in enumerate(parents):
            g.add_edge(parent, oid, relation=relation, index=index)
        lines.setdefault(model, []).append(oid)
        return oid

    for m in range(models):
        if m < min(len(_ROOTS), max(1, models // 30)):
            name = _ROOTS[m]
            commit(name, [], f"import {name}")
        else:
            name = f"model-{m:03d}-{rnd.choice(_TASKS)}"
            pool = [c for cs in lines.values() for c in cs]
            if rnd.random() < 0.08 and len(lines) > 2:
                picked = rnd.sample(sorted(lines), rnd.choice([2, 2, 3]))
                parents = [(lines[p][-1], "merge") for p in picked]
                commit(name, parents, "merge " + " + ".join(picked))
            else:
                parent = rnd.choice(pool[-60:])
                relation = rnd.choice(_DERIVATIONS)
                commit(name, [(parent, relation)], f"{relation} {g.nodes[parent]['model']}")
        for v in range(rnd.choice([0, 0, 1, 1, 2])):
            commit(name, [(lines[name][-1], "version")], f"{name} v{v + 2}: more training")
    for name, cs in lines.items():
        g.nodes[cs[-1]]["heads"] = [name]
        if rnd.random() < 0.2:
            g.nodes[cs[-1]]["tags"] = [f"{name}-v{len(cs)}"]
    return g


def _time(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000.0


def main(argv: list[str] | None = None) -> None:
    """Build the synthetic lineage and print the time of each view in milliseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--html", type=Path, help="also write the HTML page here")
    args = parser.parse_args(argv)

    g = synthetic_lineage(args.models)
    entries = entries_from_graph(g)
    print(
        f"lineage: {args.models} models, {g.number_of_nodes()} commits, {g.number_of_edges()} edges"
    )
    log_lines = graph_log(entries)
    width = max(len(line) for line in log_lines)
    print(f"graph_log: {len(log_lines)} lines, widest {width} characters")
    results = {
        "entries_from_graph": _time(lambda: entries_from_graph(g), args.repeat),
        "graph_log": _time(lambda: graph_log(entries), args.repeat),
        "to_dot": _time(lambda: to_dot(g), args.repeat),
        "to_json": _time(lambda: to_json(g), args.repeat),
        "to_html": _time(lambda: to_html(g), args.repeat),
    }
    for name, ms in results.items():
        print(f"{name:>20}: {ms:8.2f} ms (median of {args.repeat})")
    page = to_html(g)
    print(f"{'html size':>20}: {len(page.encode()) / 1024:8.1f} KiB")
    if args.html:
        args.html.write_text(page, encoding="utf-8")
        print(f"wrote {args.html}")


if __name__ == "__main__":
    main()
