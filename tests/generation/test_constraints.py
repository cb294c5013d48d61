"""Constraint classes step for step as transformers 4.45.2's (constrained beam search depends on them)."""
from __future__ import annotations

import pytest
import torch
import transformers.generation.beam_constraints as hf

import formers.generation.beam_constraints as fm
from formers.errors import GenerationError


def _state(lib, kinds):
    constraints = [lib.PhrasalConstraint(arg) if kind == "phrase" else lib.DisjunctiveConstraint(arg)
                   for kind, arg in kinds]
    return lib.ConstraintListState(constraints)


def _snapshot(state):
    return (state.get_bank(), state.completed, state.advance(), len(state.complete_constraints))


@pytest.mark.parametrize("kinds", [
    [("phrase", [3, 4, 5])],
    [("disjunctive", [[3, 4], [6], [3, 7, 8]])],
    [("phrase", [3, 4]), ("disjunctive", [[5, 6], [7]])],
])
def test_list_state_walks_like_transformers(kinds):
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        tokens = torch.randint(3, 9, (12,), generator=generator).tolist()
        ours, theirs = _state(fm, kinds), _state(hf, kinds)
        for token in tokens:
            assert ours.add(token) == theirs.add(token)
            assert _snapshot(ours) == _snapshot(theirs)
            copy_a, copy_b = ours.copy(stateful=True), theirs.copy(stateful=True)
            assert _snapshot(copy_a) == _snapshot(copy_b)
        fresh_a, fresh_b = _state(fm, kinds), _state(hf, kinds)
        fresh_a.reset(tokens)
        fresh_b.reset(tokens)
        assert _snapshot(fresh_a) == _snapshot(fresh_b)


def test_constraint_validation():
    for bad in ([], [1, -2], "ab"):
        with pytest.raises(GenerationError):
            fm.PhrasalConstraint(bad)
    with pytest.raises(GenerationError, match="subset"):
        fm.DisjunctiveConstraint([[1, 2], [1, 2, 3]])
    with pytest.raises(TypeError):
        fm.PhrasalConstraint([1, 2]).does_advance("1")


def test_custom_constraint_is_self_tested():
    class Broken(fm.Constraint):
        def __init__(self):
            self.seqlen = 1
            super().__init__()

        def advance(self):
            return 1

        def does_advance(self, token_id):
            return False

        def update(self, token_id):
            return False, False, False

        def reset(self):
            pass

        def remaining(self):
            return 1

        def copy(self, stateful=False):
            return Broken()

    with pytest.raises(GenerationError, match="does_advance"):
        Broken()
