"""config loss.normalisation: token and sequence do not depend on the micro × accum split (nor on how passes are
executed); micro_batch — the seed study's loss — does, and equals sequence at micro 1 and token at one micro-batch."""

import pytest
import torch

from ada_slm.agl.builder import build_corpus
from ada_slm.run import models
from ada_slm.run.datasets_io import tokenize
from ada_slm.run.steps import (
    accumulate_step,
    collate,
    micro_batches,
    sequence_weights,
    summed_loss,
    target_tokens,
    token_budget_passes,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup():
    from peft import LoraConfig, get_peft_model

    model, tok, _ = models.load("tiny-lfm2")
    torch.manual_seed(0)
    model = get_peft_model(
        model,
        LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, target_modules=models.default_targets(model), init_lora_weights=False
        ),
    )
    rows = build_corpus(40, "pure", seed=3).train
    examples, _ = tokenize(rows, tok, max_length=320)
    by_count: dict[int, object] = {}
    for e in examples:  # three sequences with different numbers of target tokens: the weightings then differ
        by_count.setdefault(target_tokens([e]), e)
    three = list(by_count.values())[:3]
    assert len({target_tokens([e]) for e in three}) == 3
    return model, tok, three


def _step(model, tok, passes, weights):
    model.zero_grad(set_to_none=True)
    loss, _ = accumulate_step(model, passes, tok.pad_token_id, CPU, None, weights)
    return loss, [p.grad.clone() for p in model.parameters() if p.requires_grad]


def _hand(model, tok, groups_of_weights):
    """Σ weight × (summed token loss of a group of sequences), computed one sequence at a time, by hand."""
    model.zero_grad(set_to_none=True)
    total = 0.0
    for group, weight in groups_of_weights:
        part = sum(summed_loss(model, collate([e], tok.pad_token_id, CPU), None) for e in group) * weight
        part.backward()
        total += part.item()
    return total, [p.grad.clone() for p in model.parameters() if p.requires_grad]


def _close(a, b):
    assert abs(a[0] - b[0]) / abs(b[0]) < 1e-5, (a[0], b[0])
    for g, r in zip(a[1], b[1], strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_sequence_at_micro_1_is_the_mean_of_per_sequence_means(setup):
    model, tok, three = setup
    counts = [target_tokens([e]) for e in three]
    hand = _hand(model, tok, [([e], 1 / (3 * c)) for e, c in zip(three, counts, strict=True)])  # (1/3) Σ (sum_s / n_s)
    for micro in (1, 3):  # `sequence` does not depend on the split
        for passes in (micro_batches(three, micro), token_budget_passes(three, 10_000, 0)):
            _close(_step(model, tok, passes, sequence_weights(three, micro, "sequence")), hand)
    # the seed's micro_batch loss at micro 1: each micro-batch is one sequence — the same number
    _close(_step(model, tok, micro_batches(three, 1), sequence_weights(three, 1, "micro_batch")), hand)


def test_token_is_split_invariant_and_micro_batch_at_one_micro_batch_is_token(setup):
    model, tok, three = setup
    total = sum(target_tokens([e]) for e in three)
    hand = _hand(model, tok, [(three, 1 / total)])
    assert sequence_weights(three, 1, "token") is None
    for micro in (1, 3):
        _close(_step(model, tok, micro_batches(three, micro), None), hand)
    _close(_step(model, tok, micro_batches(three, 1), sequence_weights(three, 3, "micro_batch")), hand)


def test_micro_batch_weights_each_configured_micro_batch_by_its_own_tokens(setup):
    """micro 2 of three sequences (data order): [s0, s1] and [s2], each micro-batch's token mean, averaged over
    the two — whatever passes the step is executed in."""
    model, tok, three = setup
    c = [target_tokens([e]) for e in three]
    hand = _hand(model, tok, [(three[:2], 1 / (2 * (c[0] + c[1]))), (three[2:], 1 / (2 * c[2]))])
    weights = sequence_weights(three, 2, "micro_batch")
    for passes in (micro_batches(three, 1), micro_batches(three, 3), token_budget_passes(three, 10_000, 0)):
        _close(_step(model, tok, passes, weights), hand)
    # and it is a different objective from micro 1's: the split is a real factor under this loss
    at_one = _step(model, tok, micro_batches(three, 1), sequence_weights(three, 1, "micro_batch"))
    assert abs(at_one[0] - hand[0]) > 1e-4


def test_a_sequence_without_target_tokens_weighs_nothing(setup):
    _, _, three = setup
    empty = type(three[0])(input_ids=three[0].input_ids, labels=[-100] * len(three[0].labels))
    for how in ("sequence", "micro_batch"):
        w = sequence_weights([empty, *three], 1, how)
        assert w[id(empty)] == 0.0
        assert sum(w[id(e)] * target_tokens([e]) for e in three) == pytest.approx(1.0)
