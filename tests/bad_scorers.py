"""Scorers as users write them, good and bad, for the tests: plain functions named by `_target_`."""

import math


def length_score(prompts, responses, per_char=1.0):
    return [per_char * len(r) for r in responses]


def constant_score(prompts, responses):
    return [0.5 for _ in responses]


def nan_score(prompts, responses):
    return [math.nan if i == 1 else 0.0 for i, _ in enumerate(responses)]


def inf_score(prompts, responses):
    return [math.inf for _ in responses]


def text_score(prompts, responses):
    return ["0.7" for _ in responses]


def short_score(prompts, responses):
    return [1.0 for _ in responses[1:]]


def raising_score(prompts, responses):
    raise KeyError("no such label")
