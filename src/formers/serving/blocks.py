"""KV block bookkeeping: which fixed-size blocks are free, who holds each, and the prefix cache.

Every block holds `block_size` consecutive positions of one sequence. A *full* block is keyed by a
chain hash of every token up to its end (hash(parent key, its tokens)), so two prompts that share a
prefix share its blocks: the key depends on the whole prefix and hence on the absolute positions the
cached keys were rotated for. Blocks are reference counted; a cached block whose count drops to zero
stays reusable in an LRU list and is evicted (forgotten) only when a fresh block is needed.

Placement: a sequence's pages are kept physically consecutive where the pool allows, so attention can
read them in place (a view of the store) instead of gathering them. A new sequence gets the first run
of unheld blocks at or after a cursor that sweeps the pool, long enough for its pages plus a growth
`room` left untouched behind them (the cursor moves past it), and growing takes the block right after
the sequence's last one when nobody holds it. Blocks that have never been cached are searched first;
only then cached ones with no holder (the sweep reaches the longest-released first, close to LRU).
When no run fits, any unheld blocks do (free first, then least recently used cached ones).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

NO_BLOCK = -1  # a block-table entry freed because it lies entirely outside the sliding window


def chain_hashes(token_ids: list[int], block_size: int, start_key: bytes = b"", first_block: int = 0,
                 count: int | None = None) -> list[bytes]:
    """Keys of the full blocks `first_block`, ... of `token_ids` (`start_key`: the key of the block before)."""
    keys, key = [], start_key
    full = len(token_ids) // block_size
    last = full if count is None else min(full, first_block + count)
    for block in range(first_block, last):
        chunk = np.asarray(token_ids[block * block_size:(block + 1) * block_size], dtype=np.int64)
        key = hashlib.blake2b(key + chunk.tobytes(), digest_size=16).digest()
        keys.append(key)
    return keys


class BlockManager:
    """Allocates blocks 0..num_blocks-1, counts references and keeps the prefix cache (key -> block)."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.block_key: list[bytes | None] = [None] * num_blocks
        self.cached: dict[bytes, int] = {}                     # key -> block holding it
        self.free: dict[int, None] = dict.fromkeys(range(num_blocks))  # never cached, in release order
        self.evictable: OrderedDict[int, None] = OrderedDict()   # cached blocks with no holder, LRU first
        self.queries = self.hits = 0
        self.cursor = 0  # where the search for the next new sequence's run starts

    # --- accounting ---------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Blocks that can be handed out now (free or evictable)."""
        return len(self.free) + len(self.evictable)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    # --- allocation ---------------------------------------------------------------------------
    def allocate(self, count: int, after: int | None = None, room: int = 0) -> list[int] | None:
        """`count` fresh blocks (reference 1 each), or None (and nothing taken) when too few are left.
        `after`: the sequence's last block (grow right behind it); else a new run with `room` spare behind."""
        if count > self.num_free:
            return None
        blocks: list[int] = []
        if after is not None:
            following = after + 1
            while len(blocks) < count and following < self.num_blocks and self.ref_counts[following] == 0 \
                    and (self.block_key[following] is None or not self.free):  # keep cached prefixes while we can
                blocks.append(self._take(following))
                following += 1
        elif count > 1 or room:
            start = self._find_run(count + room, uncached=True)
            if start is None:
                start = self._find_run(count + room, uncached=False)
            if start is None:
                start = self._find_run(count, uncached=False)
            if start is not None:
                blocks = [self._take(block) for block in range(start, start + count)]
                self.cursor = (start + count + room) % self.num_blocks
        while len(blocks) < count:  # anywhere: a never-cached block, else the least recently used cached one
            if self.free:
                block, _ = self.free.popitem()
                self.ref_counts[block] = 1
                blocks.append(block)
            else:
                blocks.append(self._take(next(iter(self.evictable))))
        return blocks

    def _find_run(self, length: int, uncached: bool) -> int | None:
        """The first start, sweeping from the cursor, of `length` consecutive unheld blocks (never-cached
        ones only when `uncached`), or None."""
        if length > self.num_blocks:
            return None
        refs, keys, run, start = self.ref_counts, self.block_key, 0, self.cursor
        for step in range(self.num_blocks + length):
            block = (self.cursor + step) % self.num_blocks
            if block == 0:
                run = 0  # a run never wraps around the end of the pool
            if refs[block] == 0 and not (uncached and keys[block] is not None):
                if run == 0:
                    start = block
                run += 1
                if run == length:
                    return start
            else:
                run = 0
        return None

    def _take(self, block: int) -> int:
        """Give `block` (unheld) a first reference, evicting its cached key if it has one."""
        if self.block_key[block] is not None:
            del self.evictable[block]
            del self.cached[self.block_key[block]]
            self.block_key[block] = None
        else:
            del self.free[block]
        self.ref_counts[block] = 1
        return block

    def release(self, blocks: list[int]) -> None:
        """Drop one reference to each block; unheld cached blocks become evictable (most recent last)."""
        for block in reversed(blocks):  # the prefix's tail evicted before its head
            if block == NO_BLOCK:
                continue
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                if self.block_key[block] is not None:
                    self.evictable[block] = None
                else:
                    self.free[block] = None

    # --- the prefix cache ------------------------------------------------------------------------
    def lookup(self, keys: list[bytes]) -> list[int]:
        """Take a reference on the longest run of cached blocks matching `keys` from the start."""
        found = []
        if not self.enable_prefix_caching:
            return found
        for key in keys:
            block = self.cached.get(key)
            if block is None:
                break
            if self.ref_counts[block] == 0:
                del self.evictable[block]
            self.ref_counts[block] += 1
            found.append(block)
        self.queries += len(keys)
        self.hits += len(found)
        return found

    def register(self, block: int, key: bytes) -> None:
        """Record that the full block `block` holds the prefix with `key` (first holder of a key wins)."""
        if self.enable_prefix_caching and key not in self.cached and self.block_key[block] is None:
            self.cached[key] = block
            self.block_key[block] = key

    def reset_prefix_cache(self) -> None:
        """Forget every cached key (blocks in use keep their contents; evictable ones become free)."""
        for block in self.evictable:
            self.free[block] = None
        self.evictable.clear()
        self.cached.clear()
        self.block_key = [None] * self.num_blocks
