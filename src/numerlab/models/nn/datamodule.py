"""A tabular DataModule that never touches single rows.

The int8 feature matrix is wrapped once with `torch.from_numpy` (no copy) and stays int8;
a batch sampler yields whole batches as index tensors (shuffled training) or a slice
(sequential evaluation), the dataset cuts them with one `index_select`/slice per tensor, and
the model converts the int8 batch to float32 on its device. The DataLoader runs with
`batch_size=None`, so there is no per-row `__getitem__` and no collate.

Training hands Lightning a chunk of `batches_per_iteration` training batches at a time (one
`index_select` for the chunk; the module takes one optimizer step per batch), which spreads
Lightning's fixed per-iteration cost over several steps.

An item is the tuple (features int8 (b, k), target float32 (b,), aux float32 (b, m),
era code int32 (b,), sizes: list of the training-batch sizes that make up the b rows).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from numerlab.data.dataset import Dataset
from numerlab.errors import NumerlabError

BATCHING_MODES = ("rows", "era")

Batch = tuple[Tensor, Tensor, Tensor, Tensor, list[int]]


class TensorBatches(torch.utils.data.Dataset):
    """Tensors of one split, indexed a whole batch at a time."""

    def __init__(self, features: Tensor, target: Tensor, aux: Tensor, era: Tensor) -> None:
        self.tensors = (features, target, aux, era)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: list[Tensor] | slice) -> Batch:  # type: ignore[override]
        """A slice (zero-copy views) or a list of index tensors (one batch each)."""
        if isinstance(index, slice):
            x, y, aux, era = (t[index] for t in self.tensors)
            return x, y, aux, era, [len(x)]
        rows = index[0] if len(index) == 1 else torch.cat(index)
        x, y, aux, era = (t.index_select(0, rows) for t in self.tensors)
        return x, y, aux, era, [len(i) for i in index]

    @classmethod
    def from_dataset(cls, data: Dataset, aux: bool) -> TensorBatches:
        features = torch.from_numpy(np.ascontiguousarray(data.features))
        target = torch.from_numpy(np.ascontiguousarray(data.target, dtype=np.float32))
        aux_array = data.aux if aux else np.empty((len(data), 0), dtype=np.float32)
        aux_t = torch.from_numpy(np.ascontiguousarray(aux_array, dtype=np.float32))
        era = torch.from_numpy(data.era_codes())
        return cls(features, target, aux_t, era)


def split_evenly(index: Tensor, batch_size: int) -> tuple[Tensor, ...]:
    """Cut `index` into ceil(n / batch_size) near-equal batches, none above `batch_size`:
    every row is used each epoch and no tiny last batch upsets batch norm."""
    return torch.tensor_split(index, math.ceil(len(index) / batch_size))


class ShuffledBatchSampler(Sampler):
    """Random batches for training, reshuffled each epoch from (seed, epoch) alone, so a
    resumed run sees the same batches as an uninterrupted one.

    batching="rows": one permutation of all rows, cut into batches.
    batching="era":  rows shuffled within each era and cut into batches of one era each
                     (an era larger than batch_size gives several); batch order shuffled.
    Iterating gives lists of up to `per_chunk` consecutive batches (index tensors).
    """

    def __init__(
        self, era: Tensor, batch_size: int, batching: str, seed: int, per_chunk: int = 1
    ) -> None:
        self.batch_size, self.batching, self.seed = batch_size, batching, seed
        self.per_chunk = max(1, per_chunk)
        self.epoch = 0
        self.n_rows = len(era)
        if batching == "era":
            order = torch.argsort(era, stable=True)
            counts = torch.bincount(era.long())
            self.era_order, self.era_counts = order, counts[counts > 0].tolist()
            self.n_batches = sum(math.ceil(c / batch_size) for c in self.era_counts)
        else:
            self.n_batches = math.ceil(self.n_rows / batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n_batches / self.per_chunk)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)

    def batches(self) -> list[Tensor]:
        """This epoch's training batches, in order."""
        gen = self._generator()
        if self.batching == "rows":
            return list(split_evenly(torch.randperm(self.n_rows, generator=gen), self.batch_size))
        batches: list[Tensor] = []
        for rows in torch.split(self.era_order, self.era_counts):
            shuffled = rows[torch.randperm(len(rows), generator=gen)]
            batches.extend(split_evenly(shuffled, self.batch_size))
        return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]

    def __iter__(self) -> Iterator[list[Tensor]]:
        batches = self.batches()
        for start in range(0, len(batches), self.per_chunk):
            yield batches[start : start + self.per_chunk]


class SequentialSliceSampler(Sampler):
    """Consecutive slices in row order: zero-copy views for evaluation."""

    def __init__(self, n_rows: int, batch_size: int) -> None:
        self.n_rows, self.batch_size = n_rows, batch_size

    def __len__(self) -> int:
        return math.ceil(self.n_rows / self.batch_size)

    def __iter__(self) -> Iterator[slice]:
        for start in range(0, self.n_rows, self.batch_size):
            yield slice(start, min(start + self.batch_size, self.n_rows))


def check_training_data(train: Dataset, batch_size: int) -> None:
    """Reject what would otherwise fail deep inside Lightning or train on garbage."""
    if len(train) == 0:
        raise NumerlabError("training data has no rows")
    n_nan = int(np.isnan(train.target).sum())
    if n_nan:
        raise NumerlabError(
            f"training target column {train.target_name!r} has {n_nan} NaN values "
            f"(of {len(train)} rows)"
        )
    if batch_size < 1:
        raise NumerlabError(f"model.batch_size={batch_size} must be at least 1")
    if batch_size > len(train):
        raise NumerlabError(
            f"model.batch_size={batch_size} is larger than the training data ({len(train)} rows)"
        )


class TabularDataModule(L.LightningDataModule):
    """Train (and optionally validation) batches for a `TabularLitModule`.

    batching:   "rows" (shuffle all rows) or "era" (each batch from a single era).
    batches_per_iteration: training batches handed to Lightning at once (see module doc).
    pin_memory: pin each batch for faster, asynchronous host-to-GPU copies (cuda only).
    Validation rows with an unknown target (Numerai test rows) are dropped.
    """

    def __init__(
        self,
        train: Dataset,
        valid: Dataset | None = None,
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        batching: str = "rows",
        batches_per_iteration: int = 1,
        seed: int = 0,
        use_aux: bool = False,
        pin_memory: bool = False,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batching not in BATCHING_MODES:
            raise NumerlabError(
                f"model.batching={batching} is not one of {', '.join(BATCHING_MODES)}"
            )
        check_training_data(train, batch_size)
        self.batch_size, self.eval_batch_size = batch_size, max(1, eval_batch_size)
        self.batching, self.seed = batching, seed
        self.batches_per_iteration = max(1, int(batches_per_iteration))
        self.pin_memory, self.num_workers = pin_memory, num_workers
        self.train_batches = TensorBatches.from_dataset(train, aux=use_aux)
        valid = valid.with_known_target() if valid is not None else None
        self.valid_batches = (
            TensorBatches.from_dataset(valid, aux=use_aux)
            if valid is not None and len(valid)
            else None
        )

    @property
    def has_validation(self) -> bool:
        return self.valid_batches is not None

    def _loader(self, data: TensorBatches, sampler: Sampler) -> DataLoader:
        return DataLoader(
            data,
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        era = self.train_batches.tensors[3]
        sampler = ShuffledBatchSampler(
            era, self.batch_size, self.batching, self.seed, self.batches_per_iteration
        )
        return self._loader(self.train_batches, sampler)

    def val_dataloader(self) -> DataLoader | list:
        if self.valid_batches is None:
            return []
        sampler = SequentialSliceSampler(len(self.valid_batches), self.eval_batch_size)
        return self._loader(self.valid_batches, sampler)
