"""The benchmark's tables: one row per (task, method, modality-dropout arm), as markdown, CSV and JSON.

Accuracy: mean, sample std and 95% t-interval over seeds, on test. Paired differences (per seed, same seeds):
against the best unimodal baseline (the one with the highest mean *validation* accuracy, so that choosing
the reference does not read test), against late fusion, and, for a progressively trained method, against the
same method trained end to end; `*` marks an interval that excludes 0.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from mmlab.fusion_bench.methods import TRAINING_MODES
from mmlab.fusion_bench.stats import mean_std, paired_difference, t_interval
from mmlab.fusion_bench.store import write_json

LATE = "late"


def _arm(record: dict, p: float) -> list[dict]:
    return sorted((s for s in record["seeds"] if s["modality_dropout"] == p), key=lambda s: s["seed"])


def best_unimodal(records: list[dict], task: str) -> dict | None:
    """The unimodal baseline of `task` with the highest mean validation accuracy over its seeds."""
    uni = [r for r in records if r["task"] == task and r["unimodal"]]
    if not uni:
        return None
    return max(uni, key=lambda r: mean_std([s["val"] for s in _arm(r, 0.0)])[0])


def end_to_end_of(records: list[dict], record: dict) -> dict | None:
    """The end-to-end-trained counterpart of a progressively trained method's record (None for end to end)."""
    training = record.get("training", "end_to_end")
    if training == "end_to_end":
        return None
    label = record["method"].removesuffix(TRAINING_MODES[training])
    return next((x for x in records if x["task"] == record["task"] and x["method"] == label), None)


def _diff(a: list[dict], b: list[dict]) -> dict:
    n = min(len(a), len(b))
    return paired_difference([s["acc"] for s in a[:n]], [s["acc"] for s in b[:n]])


@dataclass
class BenchResult:
    records: list[dict]  # one per (task, method): selection, per-seed records, cost
    meta: dict

    def rows(self) -> list[dict]:
        rows = []
        for r in self.records:
            ref = best_unimodal(self.records, r["task"])
            late = next((x for x in self.records if x["task"] == r["task"] and x["method"] == LATE), None)
            for p in sorted({s["modality_dropout"] for s in r["seeds"]}):
                arm = _arm(r, p)
                accs = [s["acc"] for s in arm]
                mean, low, high = t_interval(accs)
                row = {"task": r["task"], "method": r["method"], "fusion": r["fusion"],
                       "training": r.get("training", "end_to_end"), "modality_dropout": p,
                       "seeds": len(arm), "acc_mean": mean, "acc_std": mean_std(accs)[1], "acc_ci_low": low,
                       "acc_ci_high": high, "val_mean": mean_std([s["val"] for s in arm])[0],
                       "tuning_val": r["selection"]["val"],
                       "best_step_mean": mean_std([s["best_step"] for s in arm])[0]}
                for name, other in (("unimodal", ref), ("late", late),
                                    ("end_to_end", end_to_end_of(self.records, r))):
                    d = _diff(arm, _arm(other, 0.0)) if other is not None and p == 0.0 and other is not r else None
                    row[f"vs_{name}"] = other["method"] if d else ""
                    for k in ("mean", "low", "high"):
                        row[f"vs_{name}_{k}"] = d[k] if d else math.nan
                    row[f"vs_{name}_significant"] = d["excludes_zero"] if d else ""
                for key in sorted({k for s in arm for k in s if k.startswith(("acc_drop_", "acc_noise_"))}):
                    row[key] = mean_std([s[key] for s in arm])[0]
                row.update(r["cost"])
                row["train_s_mean"] = mean_std([s["seconds"] for s in arm])[0]
                row["selected"] = json.dumps(r["selection"]["params"], sort_keys=True)
                rows.append(row)
        return rows

    def to_csv(self) -> str:
        rows = self.rows()
        fields = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps({"meta": self.meta, "rows": self.rows(), "records": self.records}, indent=1,
                          sort_keys=True, default=str)

    def to_markdown(self, timings: bool = True) -> str:
        rows = self.rows()
        c = self.meta["config"]
        lines = [
            "# Fusion benchmark: tuned, validation-selected, several seeds", "",
            f"- command: `{self.meta['command']}`",
            f"- protocol: {c['trials']} TPE trials per method (Optuna, sampler seed {c['sampler_seed']}, "
            f"{min(c['startup_trials'], c['trials'])} random start-up trials) over lr, weight decay, schedule "
            f"length (<= {c['max_steps']} steps) and the family's search space; selection on validation, early "
            f"stopping on validation (every {c['eval_every']} steps, patience {c['patience']}, from half the schedule "
            f"on); the selected configuration at {c['seeds']} seeds, test read once per seed; modality dropout "
            f"p = {c['modality_dropout']} at {c['dropout_seeds']} seeds",
            "- accuracy: test, mean ± sample std over seeds, 95% t-interval; Δ: paired per-seed difference with "
            "its 95% t-interval, `*` where the interval excludes 0; the unimodal reference is the baseline with "
            "the best mean validation accuracy",
            f"- machine: {self.meta['machine']}; {self.meta['versions']}; {self.meta['date']}; wall time of "
            f"this call {self.meta['wall_s'] / 60:.1f} min", ""]
        for task, info in self.meta["tasks"].items():
            lines += [f"## Task `{task}`", "",
                      f"- {info['train']} train / {info['val']} val / {info['test']} test examples, "
                      f"{info['num_classes']} classes, majority-class accuracy on test {info['chance']:.3f}; "
                      f"information: {info['information']}"]
            lines += [f"- {m} alone, by construction: {text}" if m in info["modalities"] else f"- {m}: {text}"
                      for m, text in info["by_construction"].items()]
            progressive = any(r.get("training", "end_to_end") != "end_to_end" for r in self.records)
            head = ["method", "accuracy", "95% CI", "Δ vs best unimodal", "Δ vs late",
                    *(["Δ vs end to end"] if progressive else []), "val", "steps",
                    "params", "MFLOPs", *(["latency ms", "train s"] if timings else []), "selected"]
            lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for r in (r for r in rows if r["task"] == task and r["modality_dropout"] == 0.0):
                cells = [r["method"], f"{r['acc_mean']:.3f} ± {r['acc_std']:.3f}",
                         _ci(r["acc_ci_low"], r["acc_ci_high"]), _delta(r, "unimodal"), _delta(r, "late"),
                         *([_delta(r, "end_to_end")] if progressive else []), f"{r['val_mean']:.3f}",
                         f"{r['best_step_mean']:.0f}", f"{r['params']:,}", f"{r['mflops_per_sample']:.3f}"]
                cells += [f"{r['latency_ms']:.2f}", f"{r['train_s_mean']:.1f}"] if timings else []
                cells.append(_selected(r["selected"]))
                lines.append("| " + " | ".join(cells) + " |")
            lines += self.robustness_markdown(task)
            lines.append("")
        return "\n".join(lines)

    def robustness(self, task: str) -> list[dict]:
        """Per multimodal method of `task` trained with modality dropout: test accuracy clean and with each
        modality zeroed, without and with modality-dropout training, over the same seeds (the dropout arm's),
        and the paired differences (with - without)."""
        out = []
        mods = self.meta["tasks"][task]["modalities"]
        for r in (r for r in self.records if r["task"] == task and not r["unimodal"]):
            ps = sorted({s["modality_dropout"] for s in r["seeds"]} - {0.0})
            for p in ps:
                with_md = _arm(r, p)
                plain = _arm(r, 0.0)[: len(with_md)]
                row = {"method": r["method"], "modality_dropout": p, "seeds": len(with_md)}
                for key in ["acc"] + [f"acc_drop_{m}" for m in mods]:
                    a, b = [s[key] for s in plain], [s[key] for s in with_md]
                    row[f"{key}_plain"], row[f"{key}_md"] = mean_std(a)[0], mean_std(b)[0]
                    row[f"{key}_diff"] = paired_difference(b, a)
                out.append(row)
        return out

    def robustness_markdown(self, task: str) -> list[str]:
        rows = self.robustness(task)
        if not rows:
            return []
        mods = self.meta["tasks"][task]["modalities"]
        keys = [("acc", "clean")] + [(f"acc_drop_{m}", f"{m} zeroed") for m in mods]
        head = ["method", "p", "seeds"] + [f"{label}: without → with" for _, label in keys] + \
            [f"Δ {label}" for _, label in keys]
        lines = ["", "Modality-dropout training (test accuracy, the same seeds without and with it; Δ = with - "
                 "without, paired, 95% t-interval, `*` excludes 0):", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["method"], f"{r['modality_dropout']:g}", str(r["seeds"])]
            cells += [f"{r[f'{k}_plain']:.3f} → {r[f'{k}_md']:.3f}" for k, _ in keys]
            for k, _ in keys:
                d = r[f"{k}_diff"]
                cells.append(f"{d['mean']:+.3f} {_ci(d['low'], d['high'])}{'*' if d['excludes_zero'] else ''}")
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def save(self, out: str | Path, stem: str = "fusion_leaderboard", plots: bool = True) -> list[Path]:
        """Write `<out>/<stem>.md`, `.csv`, `.json` (atomically) and, with `plots`, three PNG figures."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, text in ((".md", self.to_markdown()), (".csv", self.to_csv())):
            path = out / f"{stem}{suffix}"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
            paths.append(path)
        write_json(out / f"{stem}.json", json.loads(self.to_json()))
        paths.append(out / f"{stem}.json")
        if plots:
            from mmlab.fusion_bench.plots import save_plots

            paths += save_plots(self, out, stem)
        return paths


def load_result(path: str | Path) -> BenchResult:
    """A `BenchResult` read back from the JSON file `BenchResult.save` wrote (e.g. the recorded full run)."""
    data = json.loads(Path(path).read_text())
    return BenchResult(data["records"], data["meta"])


def _ci(low: float, high: float) -> str:
    return "—" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"


def _delta(row: dict, name: str) -> str:
    if not row[f"vs_{name}"] or math.isnan(row[f"vs_{name}_mean"]):
        return "—"
    star = "*" if row[f"vs_{name}_significant"] else ""
    return f"{row[f'vs_{name}_mean']:+.3f} {_ci(row[f'vs_{name}_low'], row[f'vs_{name}_high'])}{star}"


def _selected(params_json: str) -> str:
    params = json.loads(params_json)
    return ", ".join(f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
