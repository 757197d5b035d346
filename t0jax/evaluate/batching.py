"""How examples with answer choices become fixed-shape scoring steps (host side, no JAX).

A step encodes a few inputs once, then decodes all of their choices in one or more chunks of
decoder rows. Choices of one example are *packed* into rows (several choices one after another,
kept apart by segment ids), so the decoder's cross-attention keys and values over the input are
computed once per row rather than once per choice; a row never mixes two examples, because it
attends to a single encoding.

Shapes come from length buckets (multiples of 8 up to 64, then 4 per octave: at most 25% and
typically about 10% padding) and power-of-two row counts, so an evaluation compiles a handful of
programs. Steps depend only on the examples and the settings, never on the device mesh, and a
choice's score does not depend on the step or row it lands in (padding is masked exactly).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple


def bucket_length(n: int, per_octave: int = 4, granule: int = 8) -> int:
  """Padded length for `n` tokens: a multiple of `granule` up to 8 * granule, then `per_octave`
  evenly spaced lengths per doubling."""
  if n <= granule:
    return granule
  below = 1 << ((n - 1).bit_length() - 1)  # the largest power of two < n
  step = max(granule, below // per_octave)
  return -(-n // step) * step


def row_count(n: int, limit: int, multiple: int = 1) -> int:
  """Rows for `n` items: the next power of two, at most `limit` (unless `n` is larger), rounded
  up to a multiple of `multiple` (the data-parallel size, so rows split evenly over devices)."""
  rows = min(1 << max(0, n - 1).bit_length(), max(limit, n))
  return -(-rows // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class Row:
  """Choices `choices` (indices into its choice list) of example `example`, whose encoding is
  row `slot` of the step's encoder batch; `tokens` is their total length."""

  slot: int
  example: int
  choices: Tuple[int, ...]
  tokens: int


@dataclasses.dataclass(frozen=True)
class Step:
  """Encode `examples` once, then decode `chunks` (groups of at most `num_rows` rows), every
  chunk padded to `num_rows` x `row_length`. One compiled program runs a whole step."""

  examples: Tuple[int, ...]  # example indices, in encoder-row order
  input_length: int
  num_example_rows: int  # padded encoder batch
  chunks: Tuple[Tuple[Row, ...], ...]
  num_rows: int
  row_length: int

  @property
  def signature(self) -> tuple:
    """The shapes that decide the step's compiled program (hosts must agree on it)."""
    return (
      self.num_example_rows,
      self.input_length,
      len(self.chunks),
      self.num_rows,
      self.row_length,
    )


def pack_choices(lengths: Sequence[int], max_row_tokens: int) -> List[Tuple[int, ...]]:
  """Consecutive choices grouped into rows of at most `max_row_tokens` tokens (a longer choice
  gets a row of its own). `max_row_tokens=0` puts every choice in its own row."""
  rows, current, used = [], [], 0
  for j, n in enumerate(lengths):
    if current and used + n > max_row_tokens:
      rows.append(tuple(current))
      current, used = [], 0
    current.append(j)
    used += n
  if current:
    rows.append(tuple(current))
  return rows


def plan_steps(
  input_lengths: Sequence[int],
  choice_lengths: Sequence[Sequence[int]],
  *,
  batch_size: int,
  max_row_tokens: int = 256,
  per_octave: int = 4,
  row_multiple: int = 1,
) -> List[Step]:
  """Steps covering every example exactly once.

  `batch_size` bounds the inputs encoded per step and the decoder rows per chunk. Examples are
  grouped by input bucket, then ordered by their longest packed row, so the rows of a chunk need
  similar padding. A step takes examples until `batch_size` inputs or `batch_size` rows; an
  example with more rows than that gets a step of its own with several chunks.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
  packed = []
  for lengths in choice_lengths:
    groups = pack_choices(lengths, max_row_tokens)
    packed.append([(g, sum(lengths[j] for j in g)) for g in groups])
  by_bucket: Dict[int, List[int]] = {}
  for i, n in enumerate(input_lengths):
    by_bucket.setdefault(bucket_length(n, per_octave), []).append(i)
  steps = []
  for input_length, members in sorted(by_bucket.items()):
    members.sort(key=lambda i: (max(t for _, t in packed[i]), i))
    current: List[int] = []
    rows: List[Row] = []
    for i in members:
      if current and (len(current) == batch_size or len(rows) + len(packed[i]) > batch_size):
        steps.append(_make_step(current, rows, input_length, batch_size, per_octave, row_multiple))
        current, rows = [], []
      rows += [Row(len(current), i, g, t) for g, t in packed[i]]
      current.append(i)
    if current:
      steps.append(_make_step(current, rows, input_length, batch_size, per_octave, row_multiple))
  return steps


def _make_step(examples, rows, input_length, batch_size, per_octave, multiple) -> Step:
  chunks = tuple(tuple(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size))
  return Step(
    tuple(examples),
    input_length,
    row_count(len(examples), batch_size, multiple),
    chunks,
    row_count(max(len(c) for c in chunks), batch_size, multiple),
    bucket_length(max(r.tokens for r in rows), per_octave),
  )


def empty_step(signature: tuple) -> Step:
  """A step of the given shapes holding no example (all padding), for hosts that run out of
  work before others: every host of a multi-host run must run the same programs in turn."""
  num_example_rows, input_length, num_chunks, num_rows, row_length = signature
  return Step((), input_length, num_example_rows, ((),) * num_chunks, num_rows, row_length)


def align_plans(steps: Sequence[Step], all_signatures: Sequence[Sequence[tuple]]) -> List[Step]:
  """This host's steps, padded with empty ones and ordered so that every host runs the same
  sequence of signatures: for each signature (sorted), as many steps as the busiest host has."""
  mine: Dict[tuple, List[Step]] = {}
  for step in steps:
    mine.setdefault(step.signature, []).append(step)
  needed: Dict[tuple, int] = {}
  for signatures in all_signatures:
    counts: Dict[tuple, int] = {}
    for sig in signatures:
      sig = _as_tuple(sig)
      counts[sig] = counts.get(sig, 0) + 1
    for sig, n in counts.items():
      needed[sig] = max(needed.get(sig, 0), n)
  aligned = []
  for sig in sorted(needed):
    have = mine.get(sig, [])
    aligned += have + [empty_step(sig)] * (needed[sig] - len(have))
  return aligned


def _as_tuple(x):
  """Signatures come back from JSON as nested lists."""
  return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
