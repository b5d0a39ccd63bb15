"""Sampling a policy: n responses per prompt, in seeded chunks (so a multi-process job shards the chunks and
gathers exactly the samples one process would draw), kept as text and, from a policy that can say, as the
sampled token ids with their EOS flags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mpo.infra import distributed
from mpo.infra.console import bar
from mpo.models.policies import Decoding, TextPolicy


@dataclass(frozen=True)
class Samples:
    """Responses to ``prompts`` repeated ``n`` times (row-major: prompt i's samples at i*n ... i*n+n-1)."""

    prompts: list[str]
    n: int
    responses: list[str]
    # whether each response ended with EOS; None when the policy does not say
    finished: list[bool] | None = None
    # the sampled token ids per response (prompt, completion with EOS where finished); None for text policies
    prompt_ids: list[list[int]] | None = None
    completion_ids: list[list[int]] | None = None
    # log Ẑ(x) per response, from a sequence-level mixture (its density needs it); None otherwise
    log_normaliser: list[float] | None = None

    @property
    def flat_prompts(self) -> list[str]:
        return [p for p in self.prompts for _ in range(self.n)]


def sample(policy: TextPolicy, prompts: Sequence[str], n: int, decoding: Decoding, desc: str = "sampling",
           shard: bool = False) -> Samples:
    """n responses per prompt; with their token ids and EOS flags when the policy can say (`HFPolicy`).

    Prompts are sampled in chunks of ``decoding.batch_size``, each with a seed of its own, so with ``shard`` (every
    rank of a multi-process job calls this) each rank samples every world_size-th chunk and all ranks gather the
    same samples one process would draw."""
    flat = [p for p in prompts for _ in range(n)]
    chunk = decoding.batch_size
    starts = list(range(0, len(flat), chunk))
    mine = distributed.shard(starts) if shard else starts
    pieces = [_sample_chunk(policy, flat[start: start + chunk], Decoding(**{**decoding.__dict__, "seed": decoding.seed + start}))
              for start in bar(mine, desc=desc, unit="batch")]
    if shard:
        pieces = distributed.gather(pieces, "sampling")
    if not hasattr(policy, "generate_tokens"):
        return Samples(list(prompts), n, [r for piece in pieces for r in piece["responses"]])
    joined = {key: [x for piece in pieces for x in piece[key]] for key in pieces[0]} if pieces else {}
    return Samples(list(prompts), n, joined.get("responses", []), joined.get("finished", []),
                   joined.get("prompt_ids", []), joined.get("completion_ids", []),
                   joined.get("log_normaliser") or None)


def _sample_chunk(policy: TextPolicy, prompts: list[str], decoding: Decoding) -> dict[str, list]:
    """One chunk's responses (and, from a policy that can say, their token ids, EOS flags and log Ẑ)."""
    if not hasattr(policy, "generate_tokens"):
        return {"responses": policy.generate(prompts, decoding)}
    out = policy.generate_tokens(prompts, decoding)
    return {"responses": out.responses, "finished": out.finished, "prompt_ids": out.prompt_ids,
            "completion_ids": out.completion_ids, "log_normaliser": out.log_normaliser}
