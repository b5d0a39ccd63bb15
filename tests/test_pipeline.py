"""The shared stages of `mpo.stages.pipeline` on the tiny `experiment=smoke` config: SFT lowers held-out loss,
preference labels agree with the scorer, artifacts are reused across runs, a hub preset loads from a local
directory, the proposal tensor matches log-probabilities of the sampled ids recomputed by hand, and a bad data source fails
clearly without leaving anything half-written in the store.

One reference is built per module (tmp dir) and shared; stages that depend only on it are reused from there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import load_from_disk
from omegaconf import OmegaConf
from conftest import compose  # the same composer as the `compose_cfg` fixture, for module-scoped contexts
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from mpo.config.load import load_config
from mpo.config.schema import Config
from mpo.infra.errors import ConfigError, MissingInputError, user_error
from mpo.models.policies import load_tokenizer
from mpo.models.sampling import Samples
from mpo.stages.context import RunContext, decoding, load_policy, model_path
from mpo.stages.pipeline import (label_pairs, preference_pairs, reference_policy, reference_train_samples,
                                 task_data)
from mpo.stages.singles import single_policy
from mpo.store.artifacts import MANIFEST, ArtifactStore
from mpo.store.files import first_mismatch

SMOKE = ("experiment=smoke", "logger=none")
OBJECTIVES = ["sentiment", "conciseness"]


def context(root: Path, *overrides: str) -> RunContext:
    """A fresh run's context (its own costs) on the store under ``root``: the smoke config plus overrides."""
    config = load_config(compose([*SMOKE, *overrides], root))
    return RunContext(config, ArtifactStore(config.paths.artifacts))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The smoke reference, built once; `costs` is a copy taken right after the first (fresh) build."""
    root = tmp_path_factory.mktemp("pipeline")
    ctx = context(root)
    reference = reference_policy(ctx)
    return SimpleNamespace(root=root, ctx=ctx, reference=reference, costs={k: dict(v) for k, v in ctx.costs.items()})


def half_written(artifacts: Path) -> list[Path]:
    """Anything in a store other than finished artifacts (dirs with a manifest) and their lock files."""
    bad = []
    for stage in artifacts.iterdir():
        if not stage.is_dir():  # the store's own files (.fingerprints.json)
            continue
        for entry in stage.iterdir():
            finished = entry.is_dir() and (entry / MANIFEST).is_file()
            if not (finished or (entry.is_file() and entry.name.endswith(".lock"))):
                bad.append(entry)
    return bad


# ---------------------------------------------------------------- 1. SFT
def test_sft_lowers_held_out_loss_and_changes_the_base_model(built):
    info = built.reference.info
    assert math.isfinite(info["eval_loss_before"]) and info["eval_loss_after"] < info["eval_loss_before"] - 0.3
    base = AutoModelForCausalLM.from_pretrained(str(built.ctx.store.root / built.ctx.costs["base_model"]["artifact"]))
    sft = AutoModelForCausalLM.from_pretrained(model_path(built.reference))
    base_params, sft_params = base.state_dict(), sft.state_dict()
    assert base_params.keys() == sft_params.keys()
    changed = [k for k in base_params if not torch.equal(base_params[k], sft_params[k])]
    assert len(changed) > len(base_params) // 2, "SFT left most parameters untouched"


# ---------------------------------------------------------------- 2. preference pairs
def scores_of(ctx: RunContext, objective: str, pairs) -> tuple[list[float], list[float]]:
    scorer = ctx.scorers[objective]
    return scorer(pairs["prompt"], pairs["chosen"]), scorer(pairs["prompt"], pairs["rejected"])


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_deterministic_pairs_agree_with_the_scorer(built, objective):
    ctx = context(built.root)
    pairs, artifact = preference_pairs(ctx, objective)
    task = ctx.cfg.task
    samples, sample_artifact = reference_train_samples(ctx, built.reference, task.n_pair_prompts, task.responses_per_prompt,
                                                 "reference_samples")
    assert artifact.manifest["deps"] == [sample_artifact.key]  # the very samples the pairs were labelled from
    scores = ctx.scorers[objective](samples.flat_prompts, samples.responses)
    n = samples.n
    firsts = [i * n + j for i in range(len(samples.prompts)) for j in range(0, n - 1, 2)]
    ties = sum(scores[a] == scores[a + 1] for a in firsts)
    assert len(pairs) == task.n_pair_prompts * (n // 2) - ties == artifact.info["pairs"]
    assert len(pairs) >= task.n_pair_prompts // 4  # not everything tied away
    chosen, rejected = scores_of(ctx, objective, pairs)
    assert all(c > r for c, r in zip(chosen, rejected))
    assert pairs["gap"] == pytest.approx([c - r for c, r in zip(chosen, rejected)])
    by_prompt: dict[str, set[str]] = {}  # prompts (a review's first words) repeat across reviews
    for i, p in enumerate(samples.prompts):
        by_prompt.setdefault(p, set()).update(samples.responses[i * n : (i + 1) * n])
    assert all({c, r} <= by_prompt[p] for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]))


def bradley_terry(temperature: float) -> list[str]:
    # `++`: bt_temperature has a schema default but is not listed in the task YAML, so plain `key=` is refused
    return [o for k in OBJECTIVES for o in (f"task.objectives.{k}.pairs.labeling=bradley_terry",
                                            f"++task.objectives.{k}.pairs.bt_temperature={temperature}")]


def agreement(ctx: RunContext) -> tuple[int, int, float]:
    """(pairs whose chosen scores higher, untied pairs, expected count mean sigmoid(|gap|/T)) over objectives."""
    agree, untied, expected = 0, 0, 0.0
    for objective in OBJECTIVES:
        pairs, _ = preference_pairs(ctx, objective)
        assert len(pairs) == ctx.cfg.task.n_pair_prompts  # Bradley-Terry keeps ties (a coin flip)
        chosen, rejected = scores_of(ctx, objective, pairs)
        temperature = ctx.cfg.task.objectives[objective].pairs.bt_temperature
        gaps = [c - r for c, r in zip(chosen, rejected) if c != r]
        agree, untied = agree + sum(g > 0 for g in gaps), untied + len(gaps)
        expected += sum(1 / (1 + math.exp(-abs(g) / temperature)) for g in gaps)
    return agree, untied, expected


def test_bradley_terry_labels_follow_the_temperature(built):
    sharp = context(built.root, *bradley_terry(0.01))
    agree, untied, expected = agreement(sharp)
    _, deterministic = preference_pairs(context(built.root), "sentiment")
    _, labelled = preference_pairs(sharp, "sentiment")
    assert labelled.digest != deterministic.digest and labelled.manifest["deps"] == deterministic.manifest["deps"]
    assert untied > 30 and agree / untied > 0.9 and abs(agree - expected) < 3 * math.sqrt(untied * 0.25) + 1
    flat = context(built.root, *bradley_terry(100.0))
    agree, untied, _ = agreement(flat)
    assert 0.25 < agree / untied < 0.75  # ~0.5: a fair coin (6+ standard deviations from either bound)


def toy_samples() -> Samples:
    # 3 prompts x 4 responses: pairs (0,1), (2,3) per prompt; the toy score is the response's length
    responses = ["aaa", "a", "bb", "bbbb", "cc", "cc", "c", "ccc", "dd", "ddd", "eeee", "ee"]
    return Samples(["p", "q", "r"], 4, responses, [True] * 12)


def length_score(prompts: list[str], responses: list[str]) -> list[float]:
    assert len(prompts) == len(responses)
    return [float(len(r)) for r in responses]


def test_label_pairs_deterministic_by_hand():
    pairs = label_pairs(toy_samples(), length_score, "deterministic", 0.1, seed=0)
    assert pairs["prompt"] == ["p", "p", "q", "r", "r"]  # q's first pair ("cc", "cc") is a tie: dropped
    assert pairs["chosen"] == ["aaa", "bbbb", "ccc", "ddd", "eeee"]
    assert pairs["rejected"] == ["a", "bb", "c", "dd", "ee"]
    assert pairs["gap"] == [2.0, 2.0, 2.0, 1.0, 2.0]
    odd = Samples(["p"], 3, ["a", "aa", "aaaaa"], [True] * 3)  # an odd response out forms no pair
    assert label_pairs(odd, length_score, "deterministic", 0.1, seed=0)["chosen"] == ["aa"]


def test_label_pairs_bradley_terry_matches_the_sigmoid():
    kept = label_pairs(toy_samples(), length_score, "bradley_terry", 1e-2, seed=0)
    assert len(kept) == 6 and kept["prompt"] == ["p", "p", "q", "q", "r", "r"]  # the tie is kept, as a coin flip
    assert [c for c, g in zip(kept["chosen"], kept["gap"]) if g != 0] == ["aaa", "bbbb", "ccc", "ddd", "eeee"]
    # 2000 pairs with a gap of 1 at temperature 1: the first wins with probability sigmoid(1) = 0.731
    many = Samples([f"p{i}" for i in range(2000)], 2, ["xx", "x"] * 2000, [True] * 4000)
    first = label_pairs(many, length_score, "bradley_terry", 1.0, seed=3)
    rate = sum(c == "xx" for c in first["chosen"]) / len(first)
    assert abs(rate - 1 / (1 + math.exp(-1))) < 0.04  # sd 0.01
    again = label_pairs(many, length_score, "bradley_terry", 1.0, seed=3)
    assert again["chosen"] == first["chosen"]  # seeded


def test_label_pairs_bradley_terry_survives_a_tiny_temperature():
    samples = Samples(["p"], 2, ["a", "aa"], [True, True])
    pairs = label_pairs(samples, length_score, "bradley_terry", 1e-3, seed=0)
    assert pairs["chosen"] == ["aa"]


# ---------------------------------------------------------------- 3. reuse
def test_first_build_records_its_costs(built):
    for stage in ("data", "base_model", "reference"):
        cost = built.costs[stage]
        assert cost["reused"] is False and cost["seconds"] > 0 and cost["cpu_seconds"] > 0
        assert cost["artifact"].startswith(stage + "/")
    assert built.costs["reference"]["seconds"] > built.costs["base_model"]["seconds"]  # SFT is the cost


def test_second_run_reuses_the_reference(built):
    ctx = context(built.root)
    reference = reference_policy(ctx)
    assert reference.reused and reference.path == built.reference.path
    for stage in ("data", "base_model", "reference"):
        # reused, but the cost of the one build is still reported (paid once, maybe by another run)
        assert ctx.costs[stage]["reused"] is True
        assert ctx.costs[stage]["seconds"] == built.costs[stage]["seconds"]


def test_eval_settings_do_not_touch_the_reference(built):
    ctx = context(built.root, "eval.n_prompts=3", "eval.max_new_tokens=7", "eval.temperature=0.5", "eval.bootstrap=10")
    reference = reference_policy(ctx)
    assert reference.reused and reference.digest == built.reference.digest


def test_changed_sft_steps_rebuild_only_the_reference(built):
    ctx = context(built.root, "trainer.sft.max_steps=3")
    reference = reference_policy(ctx)
    assert not reference.reused and reference.digest != built.reference.digest
    assert ctx.costs["data"]["reused"] and ctx.costs["base_model"]["reused"]
    assert ctx.costs["reference"]["artifact"] == reference.key and ctx.costs["reference"]["seconds"] > 0


def test_changed_architecture_rebuilds_base_model_and_reference(built):
    short = reference_policy(context(built.root, "trainer.sft.max_steps=3"))  # reused if the test above ran
    ctx = context(built.root, "trainer.sft.max_steps=3", "policy.architecture.n_embd=16")
    reference = reference_policy(ctx)
    assert ctx.costs["data"]["reused"] and not ctx.costs["base_model"]["reused"]
    assert not reference.reused and reference.digest != short.digest  # a new base is a new reference
    assert AutoModelForCausalLM.from_pretrained(model_path(reference)).config.n_embd == 16


def test_a_stage_built_in_this_run_stays_recorded_as_built(compose_cfg):
    config = load_config(compose_cfg(*SMOKE))
    ctx = RunContext(config, ArtifactStore(config.paths.artifacts))
    task_data(ctx)
    task_data(ctx)  # every later stage asks for the data again
    assert ctx.costs["data"]["reused"] is False


# ---------------------------------------------------------------- 4. hub preset on a local dir
@pytest.fixture(scope="module")
def local_gpt2(built, tmp_path_factory) -> Path:
    """A randomly initialised GPT-2 with the smoke tokenizer, saved like a hub checkpoint."""
    out = tmp_path_factory.mktemp("local-gpt2")
    tokenizer = load_tokenizer(built.ctx.store.root / built.costs["base_model"]["artifact"])
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=128,
                        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_hub_preset_loads_a_local_directory(built, local_gpt2):
    ctx = context(built.root, "policy=gpt2", f"policy.pretrained={local_gpt2}", "policy.sft=false")
    assert ctx.cfg.policy.name == "gpt2"
    reference = reference_policy(ctx)
    assert model_path(reference) == str(local_gpt2) and "base_model" not in ctx.costs
    prompts = task_data(ctx)[0]["eval"]["prompt"][:3]
    responses = load_policy(ctx, reference).generate(prompts, decoding(ctx))
    assert len(responses) == 3 and all(isinstance(r, str) for r in responses) and any(responses)


def test_hub_preset_fine_tunes_a_local_directory(built, local_gpt2):
    ctx = context(built.root, "policy=gpt2", f"policy.pretrained={local_gpt2}", "policy.sft=true",
                  "trainer.sft.max_steps=15")
    reference = reference_policy(ctx)
    assert not reference.reused and model_path(reference) == str(reference.path) != str(local_gpt2)
    assert reference.info["eval_loss_after"] < reference.info["eval_loss_before"] - 0.3
    assert "base_model" not in ctx.costs


# ---------------------------------------------------------------- 5. the proposal tensor (MPO's estimate)
def by_hand(model, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """log π(y|x): one unpadded forward pass over the sampled ids, summed over the completion's tokens."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[t - 1, ids[0, t]]) for t in range(len(prompt_ids), ids.shape[1]))


def test_proposal_tensor_scores_the_sampled_ids_under_every_model(built):
    from mpo.config.schema import EstimatorConfig
    from mpo.stages.estimation import proposal_tensor

    ctx = context(built.root)
    cfg = EstimatorConfig(n_prompts=3, samples_per_prompt=5, reference_share=0.2)
    tensor, artifact = proposal_tensor(ctx, OBJECTIVES, cfg)
    assert tensor.counts == [1, 2, 2] and tensor.components == ["reference", *OBJECTIVES]
    assert tensor.logprobs.shape == (3, 5, 3) and torch.isfinite(tensor.logprobs).all()
    models = [AutoModelForCausalLM.from_pretrained(model_path(a)).eval()
              for a in (built.reference, *(single_policy(ctx, k) for k in OBJECTIVES))]
    eos = load_tokenizer(model_path(built.reference)).eos_token_id
    column = 0
    for j, name in enumerate(["proposal_reference", *(f"proposal_{k}" for k in OBJECTIVES)]):
        dep = ctx.costs[name]["artifact"]
        assert dep in artifact.manifest["deps"]
        rows = load_from_disk(str(ctx.store.root / dep / "samples"))
        assert rows["prompt"][:: tensor.counts[j]] == task_data(ctx)[0]["train"]["prompt"][:3]
        for i, (p_ids, c_ids, finished) in enumerate(zip(rows["prompt_ids"], rows["completion_ids"], rows["finished"])):
            assert (c_ids[-1] == eos) == finished and c_ids.count(eos) == int(finished)  # truncated: no EOS
            x, slot = divmod(i, tensor.counts[j])
            for c, model in enumerate(models):
                assert tensor.logprobs[x, column + slot, c].item() == pytest.approx(by_hand(model, p_ids, c_ids),
                                                                                 abs=2e-4, rel=1e-5)
        column += tensor.counts[j]
    est = tensor.estimate()
    assert est.proposal == "mixture" and est.log_weights.shape == (3, 5)
    assert (est.log_weights <= math.log(5 / 1) + 1e-9).all()  # π_ref/q ≤ 1/α_ref


TOKEN_GAME = ("method=mpo_token", "method.estimator.n_prompts=3", "method.estimator.samples_per_prompt=5",
              "method.estimator.reference_share=0.2", "method.token_game.n_prompts=2",
              "method.token_game.samples_per_prompt=2", "method.token_game.grid_steps=2")


def test_token_game_draws_are_the_token_level_mixture_at_each_grid_point(built):
    """At a vertex of the grid the token-level mixture is that π_k, so log q_λ/π_ref of its draws is ℓ_k exactly;
    between, log q_λ is the mixture's own per-step law (checked by hand); λ from the draws is on the simplex."""
    from mpo.core.token_game import direct_token_game
    from mpo.stages.estimation import proposal_tensor, token_game_draws

    ctx = context(built.root, *TOKEN_GAME)
    method = ctx.cfg.method
    draws = token_game_draws(ctx, OBJECTIVES, method)
    grid, ell, log_q = draws["grid"], draws["log_ratios"], draws["log_q_over_ref"]
    assert grid.tolist() == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    assert ell.shape == (3, 2, 2, 2) and log_q.shape == (3, 2, 2) and torch.isfinite(ell).all()
    assert torch.allclose(log_q[0], ell[0, ..., 1], atol=2e-4) and torch.allclose(log_q[2], ell[2, ..., 0], atol=2e-4)
    assert not torch.allclose(log_q[1], ell[1] @ grid[1].to(ell.dtype), atol=1e-3)  # A_λ < 0 between the vertices
    tensor, _ = proposal_tensor(ctx, OBJECTIVES, method.estimator)
    solution = direct_token_game(ell, log_q, tensor.reference_rows()[:2], grid, "win_rate")
    assert abs(float(solution.weights.sum()) - 1) < 1e-12 and (solution.weights >= 0).all()
    assert token_game_draws(context(built.root, *TOKEN_GAME), OBJECTIVES, method)["log_ratios"].equal(ell)  # reused


def test_max_min_weights_by_win_rate_and_for_the_token_target(built):
    """criterion=win_rate returns `solve_win_rate`'s λ on the cached tensor, with the regret solves beside it;
    target=token returns the token-level game's λ, with its grid estimates in the info."""
    from mpo.core.winrate import solve_win_rate
    from mpo.stages.estimation import max_min_weights, proposal_tensor

    ctx = context(built.root, "method=mpo", *TOKEN_GAME[1:4], "method.criterion=win_rate")
    weights, info = max_min_weights(ctx, ctx.cfg.method, OBJECTIVES)
    est = proposal_tensor(ctx, OBJECTIVES, ctx.cfg.method.estimator)[0].estimate()
    assert weights.tolist() == solve_win_rate(est.log_ratios, log_weights=est.log_weights).weights.tolist()
    assert info["criterion"] == "win_rate" and set(info["weights_exact"]) == set(OBJECTIVES)
    assert all(0 <= v <= 1 for v in info["estimated_win_rates"].values())
    ctx = context(built.root, *TOKEN_GAME)
    weights, info = max_min_weights(ctx, ctx.cfg.method, OBJECTIVES)
    assert info["target"] == "token" and info["token_estimator"] == "direct"
    assert list(info["weights_token"].values()) == weights.tolist() and len(info["token_grid_win_rates"]) == 3


def test_proposal_sampling_uses_the_models_own_density(built):
    """Temperature 1 and no top-p whatever the evaluation decodes with: an importance weight needs it."""
    from mpo.stages.estimation import proposal_decoding

    ctx = context(built.root, "eval.temperature=0.7", "eval.top_p=0.9")
    dec = proposal_decoding(ctx, 1)
    assert (dec.temperature, dec.top_p, dec.max_new_tokens) == (1.0, 1.0, ctx.cfg.eval.max_new_tokens)
    assert proposal_decoding(ctx, 2).seed != dec.seed


# ---------------------------------------------------------------- 6. errors
def unchecked(cfg) -> Config:
    """The typed config without `mpo.config.checks` (which would refuse it): what the stages do if a bad value
    gets past composition."""
    return OmegaConf.to_object(cfg)


def test_bad_data_target_fails_clearly_and_leaves_nothing(compose_cfg):
    cfg = compose_cfg(*SMOKE, "task.data._target_=mpo.data.reviews.no_such_builder")
    with pytest.raises(ConfigError, match="task.data._target_=mpo.data.reviews.no_such_builder"):
        load_config(cfg)  # refused before anything is built
    config = unchecked(cfg)
    ctx = RunContext(config, ArtifactStore(config.paths.artifacts))
    with pytest.raises(Exception, match="mpo.data.reviews.no_such_builder"):
        reference_policy(ctx)
    artifacts = Path(config.paths.artifacts)
    assert half_written(artifacts) == [] and not list(artifacts.glob("*/*/"))
    assert ctx.costs == {}


def test_missing_data_file_fails_clearly_and_leaves_nothing(compose_cfg, tmp_path):
    missing = tmp_path / "no-such-reviews.jsonl"
    cfg = compose_cfg("logger=none", "task=imdb", f"task.data.source={missing}")
    with pytest.raises(MissingInputError, match=f"task.data.source={missing}: no such file"):
        load_config(cfg)
    config = unchecked(cfg)
    ctx = RunContext(config, ArtifactStore(config.paths.artifacts))
    with pytest.raises(Exception) as raised:
        reference_policy(ctx)
    assert isinstance(user_error(raised.value), MissingInputError)  # what mpo.run prints, as one line
    assert "not found" in str(user_error(raised.value)) and str(missing) in str(user_error(raised.value))
    artifacts = Path(config.paths.artifacts)
    assert half_written(artifacts) == [] and not list(artifacts.glob("*/*/"))


def test_nothing_writes_into_a_published_artifact(built):
    """Stages read datasets out of artifacts and transform them (splits, TRL's tokenisation); read memory-mapped,
    datasets would write cache files into the artifact's directory. Every artifact keeps exactly its files."""
    ctx = context(built.root)
    single_policy(ctx, "sentiment")  # pairs read from an artifact, split, tokenised and trained on by DPO
    preference_pairs(ctx, "conciseness")[0].train_test_split(test_size=0.5, seed=0)
    manifests = list(Path(ctx.cfg.paths.artifacts).glob(f"*/*/{MANIFEST}"))
    assert len(manifests) >= 5
    for manifest_file in manifests:
        artifact = manifest_file.parent
        recorded = json.loads(manifest_file.read_text())["files"]
        on_disk = {p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file()} - {MANIFEST}
        assert on_disk == set(recorded), artifact
        assert first_mismatch(artifact, recorded) is None, artifact
