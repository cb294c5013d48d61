"""Constraints for constrained beam search: token sequences the output must contain.

The classes, methods and state transitions are transformers 4.45's (its constrained beam search
results depend on them step by step, including two behaviours kept on purpose: a phrasal constraint
reset to a partial state by a mismatch, and stateful copies of a disjunctive constraint sharing their
progress list with the original).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from ..errors import GenerationError


def _check_token_list(token_ids, name: str) -> None:
    if not isinstance(token_ids, list) or len(token_ids) == 0:
        raise GenerationError(f"`{name}` has to be a non-empty list, but is {token_ids}.")


class Constraint(ABC):
    """A constraint the generated sequence must fulfil, stepped one token at a time.

    Subclasses implement advance (tokens that make progress), does_advance, update (-> stepped,
    completed, reset), reset, remaining and copy. The constructor self-tests the implementation.
    """

    def __init__(self):
        self.test()

    def test(self) -> None:
        """Drive the constraint to completion with its own advance() tokens; raise if it cannot get there."""
        counter, completed = 0, False
        while not completed:
            if counter == 1:
                self.reset()
            advance = self.advance()
            if not self.does_advance(advance):
                raise GenerationError("Custom Constraint is not defined correctly: self.does_advance(self.advance()) "
                                      "must be true.")
            _, completed, _ = self.update(advance)
            counter += 1
            if counter > 10000:
                raise GenerationError("update() does not fulfill the constraint.")
        if self.remaining() != 0:
            raise GenerationError("Custom Constraint is not defined correctly: remaining() must be 0 once completed.")

    @abstractmethod
    def advance(self):
        """A token id (or list of ids) that would make progress, or None when completed."""

    @abstractmethod
    def does_advance(self, token_id: int) -> bool:
        """Whether `token_id` makes progress."""

    @abstractmethod
    def update(self, token_id: int) -> tuple[bool, bool, bool]:
        """Consume `token_id` -> (stepped, completed, reset)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget progress."""

    @abstractmethod
    def remaining(self) -> int:
        """Steps left to completion."""

    @abstractmethod
    def copy(self, stateful: bool = False) -> "Constraint":
        """A new constraint of the same definition (with this one's progress if `stateful`)."""


class PhrasalConstraint(Constraint):
    """The exact token sequence `token_ids` must appear."""

    def __init__(self, token_ids: list[int]):
        _check_token_list(token_ids, "token_ids")
        if any(not isinstance(t, int) or t < 0 for t in token_ids):
            raise GenerationError(f"Each list in `token_ids` has to be a list of positive integers, but is "
                                  f"{token_ids}.")
        self.token_ids = token_ids
        self.seqlen = len(token_ids)
        self.fulfilled_idx = -1  # index of the last fulfilled token
        self.completed = False

    def advance(self):
        return None if self.completed else self.token_ids[self.fulfilled_idx + 1]

    def does_advance(self, token_id: int) -> bool:
        if not isinstance(token_id, int):
            raise TypeError(f"`token_id` has to be an `int`, but is {token_id} of type {type(token_id)}")
        return not self.completed and token_id == self.token_ids[self.fulfilled_idx + 1]

    def update(self, token_id: int) -> tuple[bool, bool, bool]:
        if not isinstance(token_id, int):
            raise TypeError(f"`token_id` has to be an `int`, but is {token_id} of type {type(token_id)}")
        if not self.does_advance(token_id):
            self.reset()
            return False, False, True
        self.fulfilled_idx += 1
        self.completed = self.fulfilled_idx == self.seqlen - 1
        return True, self.completed, False

    def reset(self) -> None:
        self.completed = False
        self.fulfilled_idx = 0  # (sic) transformers 4.45 resets to "first token fulfilled"

    def remaining(self) -> int:
        return self.seqlen - (self.fulfilled_idx + 1)

    def copy(self, stateful: bool = False) -> "PhrasalConstraint":
        new = PhrasalConstraint(self.token_ids)
        if stateful:
            new.fulfilled_idx, new.completed = self.fulfilled_idx, self.completed
        return new


class DisjunctiveTrie:
    """A trie of token sequences; none may be a prefix of another (unless `no_subsets=False`)."""

    def __init__(self, nested_token_ids: list[list[int]], no_subsets: bool = True):
        self.max_height = max(len(seq) for seq in nested_token_ids)
        root: dict = {}
        for seq in nested_token_ids:
            level = root
            for token in seq:
                level = level.setdefault(token, {})
        if no_subsets and self.count_leaves(root) != len(nested_token_ids):
            raise GenerationError(f"Each list in `nested_token_ids` can't be a complete subset of another list, but "
                                  f"is {nested_token_ids}.")
        self.trie = root

    def next_tokens(self, current_seq: list[int]) -> list[int]:
        node = self.trie
        for token in current_seq:
            node = node[token]
        return list(node.keys())

    def reached_leaf(self, current_seq: list[int]) -> bool:
        return len(self.next_tokens(current_seq)) == 0

    def count_leaves(self, root: dict) -> int:
        children = list(root.values())
        return 1 if not children else sum(self.count_leaves(child) for child in children)

    def has_subsets(self, trie: dict, nested_token_ids: list[list[int]]) -> bool:
        return len(nested_token_ids) != self.count_leaves(trie)


class DisjunctiveConstraint(Constraint):
    """One of the token sequences `nested_token_ids` must appear."""

    def __init__(self, nested_token_ids: list[list[int]]):
        _check_token_list(nested_token_ids, "nested_token_ids")
        if any(not isinstance(seq, list) for seq in nested_token_ids):
            raise GenerationError(f"`nested_token_ids` has to be a list of lists, but is {nested_token_ids}.")
        if any(any(not isinstance(t, int) or t < 0 for t in seq) for seq in nested_token_ids):
            raise GenerationError(f"Each list in `nested_token_ids` has to be a list of positive integers, but is "
                                  f"{nested_token_ids}.")
        self.trie = DisjunctiveTrie(nested_token_ids)
        self.token_ids = nested_token_ids
        self.seqlen = self.trie.max_height
        self.current_seq: list[int] = []
        self.completed = False

    def advance(self):
        tokens = self.trie.next_tokens(self.current_seq)
        return tokens if tokens else None

    def does_advance(self, token_id: int) -> bool:
        if not isinstance(token_id, int):
            raise TypeError(f"`token_id` is supposed to be type `int`, but is {token_id} of type {type(token_id)}")
        return token_id in self.trie.next_tokens(self.current_seq)

    def update(self, token_id: int) -> tuple[bool, bool, bool]:
        if not isinstance(token_id, int):
            raise TypeError(f"`token_id` is supposed to be type `int`, but is {token_id} of type {type(token_id)}")
        stepped = self.does_advance(token_id)
        if stepped:
            self.current_seq.append(token_id)
        else:
            self.reset()
        self.completed = self.trie.reached_leaf(self.current_seq)
        return stepped, self.completed, not stepped

    def reset(self) -> None:
        self.completed = False
        self.current_seq = []

    def remaining(self) -> int:
        return 0 if self.completed else self.seqlen - len(self.current_seq)

    def copy(self, stateful: bool = False) -> "DisjunctiveConstraint":
        new = DisjunctiveConstraint(self.token_ids)
        if stateful:  # (sic) the progress list is shared, not copied, as in transformers 4.45
            new.current_seq, new.completed = self.current_seq, self.completed
        return new


class ConstraintListState:
    """Progress of one hypothesis through a list of constraints (at most one in progress at a time)."""

    def __init__(self, constraints: list[Constraint]):
        self.constraints = constraints
        self.max_seqlen = max(c.seqlen for c in constraints)
        self.n_constraints = len(constraints)
        self.completed = False
        self.init_state()

    def init_state(self) -> None:
        self.complete_constraints: list[Constraint] = []
        self.inprogress_constraint: Constraint | None = None
        self.pending_constraints = [c.copy(stateful=False) for c in self.constraints]

    def get_bank(self) -> int:
        """Progress score: completed constraints weigh `max_seqlen`, plus the in-progress one's steps."""
        progress = 0
        if self.inprogress_constraint:
            progress = self.max_seqlen - self.inprogress_constraint.remaining()
        return len(self.complete_constraints) * self.max_seqlen + progress

    def advance(self) -> list[int] | None:
        """Tokens that would make progress on some constraint."""
        sources = self.pending_constraints if self.inprogress_constraint is None else [self.inprogress_constraint]
        tokens: list[int] = []
        for constraint in sources:
            step = constraint.advance()
            if isinstance(step, int):
                tokens.append(step)
            elif isinstance(step, list):
                tokens.extend(step)
        return tokens if tokens else None

    def reset(self, token_ids: list[int] | None) -> None:
        """Recompute the state from scratch over `token_ids`."""
        self.init_state()
        for token in token_ids or ():
            self.add(token)
            if self.completed:
                break

    def add(self, token_id: int) -> tuple[bool, bool]:
        """Consume one token -> (complete, stepped)."""
        if not isinstance(token_id, int):
            raise TypeError(f"`token_id` should be an `int`, but is `{token_id}`.")
        if self.completed:
            return True, False
        complete = stepped = False
        if self.inprogress_constraint is not None:
            stepped, complete, reset = self.inprogress_constraint.update(token_id)
            if reset:
                self.pending_constraints.append(self.inprogress_constraint.copy(stateful=False))
                self.inprogress_constraint = None
            if complete:
                self.complete_constraints.append(self.inprogress_constraint)
                self.inprogress_constraint = None
                if not self.pending_constraints:
                    self.completed = True
            return complete, stepped
        for index, pending in enumerate(self.pending_constraints):
            if not pending.does_advance(token_id):
                continue
            stepped, complete, _ = pending.update(token_id)
            if not stepped:
                raise GenerationError("`constraint.update(token_id)` is not yielding incremental progress, even "
                                      "though `constraint.does_advance(token_id)` is true.")
            if complete:
                self.complete_constraints.append(pending)
                self.inprogress_constraint = None
            else:
                self.inprogress_constraint = pending
            self.pending_constraints = self.pending_constraints[:index] + self.pending_constraints[index + 1:]
            if not self.pending_constraints and self.inprogress_constraint is None:
                self.completed = True
            break  # one token steps one constraint at most
        return complete, stepped

    def copy(self, stateful: bool = True) -> "ConstraintListState":
        new = ConstraintListState(self.constraints)
        if stateful:
            new.complete_constraints = [c.copy(stateful=True) for c in self.complete_constraints]
            if self.inprogress_constraint is not None:
                new.inprogress_constraint = self.inprogress_constraint.copy(stateful=True)
            new.pending_constraints = [c.copy() for c in self.pending_constraints]
        return new
