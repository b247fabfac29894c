"""Run configuration: frozen keyword-only dataclasses, parsed strictly from plain dicts.

YAML is read only at the CLI edge (``fl/cli.py``); here a config is a nested dict, parsed
strictly by ``fl/config_parse.py`` (:func:`from_dict`, re-exported here with
:func:`to_dict` and :class:`ConfigError`).
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from fedgroups.fl.config_parse import apply_override, from_dict
from fedgroups.fl.config_parse import to_dict as to_dict  # re-exported
from fedgroups.fl.errors import ConfigError

OptimizerName = Literal["sgd", "momentum", "adam"]
ScheduleName = Literal["constant", "warmup_cosine", "warmup_exponential"]
# The built-in algorithms by name, as "module:callable" (imported only when a run asks for
# one, so a config error never imports torch); each is one file in fl/algos/.
ALGORITHMS: dict[str, str] = {
    "fedavg": "fedgroups.fl.algos.fedavg:FedAvg",
    "fedsgd": "fedgroups.fl.algos.fedsgd:FedSGD",
    "fedprox": "fedgroups.fl.algos.fedprox:FedProx",
    "scaffold": "fedgroups.fl.algos.scaffold:Scaffold",
    "fedavgm": "fedgroups.fl.algos.fedopt:FedAvgM",
    "fedadam": "fedgroups.fl.algos.fedopt:FedAdam",
    "fedyogi": "fedgroups.fl.algos.fedopt:FedYogi",
    "fedadagrad": "fedgroups.fl.algos.fedopt:FedAdagrad",
}
AlgorithmName = str
ServerOptimizerName = Literal["sgd", "momentum", "adam", "fedadam", "yogi", "adagrad"]
WeightingName = Literal["uniform", "examples", "tokens"]
PresetName = Literal["tiny", "mini", "small", "100m", "1b"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """A grouped dataset, optionally filtered by key globs and split by groups."""

    path: str
    text_column: str = "text"
    keys: tuple[str, ...] | None = None  # fnmatch globs; keep only groups that match one
    split: dict[str, float] | None = None  # fractions for ds.split_groups, e.g. {train: 0.9}
    split_seed: int = 0
    use_split: str | None = None  # which part of ``split`` this dataset is

    def __post_init__(self) -> None:
        if self.split is not None:
            _check(
                self.use_split in self.split,
                f"use_split must be one of {sorted(self.split)} when split is given; "
                f"got {self.use_split!r}",
            )


@dataclass(frozen=True, kw_only=True)
class EvalDatasetConfig(DatasetConfig):
    name: str
    max_clients: int = 32  # a seeded uniform sample (split_seed) is evaluated every time


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    every: int = 0  # evaluate every N rounds; 0 = only after the last round
    datasets: tuple[EvalDatasetConfig, ...] = ()
    max_sequences: int = 64  # per eval client
    batch_size: int = 16

    def __post_init__(self) -> None:
        _check(self.every >= 0, "eval.every must be >= 0")
        _check(self.max_sequences >= 2, "eval.max_sequences must be >= 2")
        _check(self.batch_size >= 1, "eval.batch_size must be >= 1")


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    optimizer: OptimizerName = "sgd"
    lr: float = 0.1
    momentum: float = 0.9  # used by "momentum"
    betas: tuple[float, float] = (0.9, 0.999)  # used by "adam"
    eps: float = 1e-8  # used by "adam"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check(self.lr >= 0, f"lr must be >= 0; got {self.lr}")
        _check(0 <= self.momentum < 1, f"momentum must be in [0, 1); got {self.momentum}")


@dataclass(frozen=True, kw_only=True)
class PersonalizationConfig(OptimizerConfig):
    enabled: bool = True
    every: int = 0  # personalize every N rounds; 0 = only after the last round
    fraction: float = 0.5  # first part of each eval client's sequences used to fine-tune
    steps: int | None = None
    epochs: int | None = None  # default 1 epoch when neither steps nor epochs is set
    batch_size: int = 8
    grad_clip_norm: float | None = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(0 < self.fraction < 1, "personalization.fraction must be in (0, 1)")
        _check(
            self.steps is None or self.epochs is None,
            "set personalization.steps or personalization.epochs, not both",
        )


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    path: str | None = None  # a tokenizer.json or tokenizer folder; None = train a BPE
    eos_token: str | None = None  # None: the folder's declared one, else <|endoftext|>
    vocab_size: int = 1024
    min_frequency: int = 2
    sample_groups: int = 64  # groups sampled (seeded) from the training dataset
    sample_examples: int = 4000  # examples read at most, across the sampled groups

    def __post_init__(self) -> None:
        _check(self.vocab_size >= 260, "tokenizer.vocab_size must be >= 260 (256 bytes + specials)")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    preset: PresetName = "tiny"
    seq_len: int = 64
    d_model: int | None = None  # overrides of the preset
    n_layers: int | None = None
    n_heads: int | None = None
    d_ff: int | None = None
    # Any causal LM instead of the built-in transformer: "package.module:function", called
    # as fn(vocab_size=..., seq_len=..., **kwargs) (see fl/model_factory.py).
    factory: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.seq_len >= 2, "model.seq_len must be >= 2")
        if self.factory is not None:
            shaped = [n for n in ("d_model", "n_layers", "n_heads", "d_ff")
                      if getattr(self, n) is not None]
            _check(not shaped, f"model.{', model.'.join(shaped)}: only for the built-in "
                   "transformer; with model.factory pass shapes in model.kwargs")
        else:
            _check(not self.kwargs, "model.kwargs: only with model.factory")


@dataclass(frozen=True, kw_only=True)
class ClientConfig(OptimizerConfig):
    local_steps: int | None = None
    local_epochs: int | None = None  # default 1 epoch when neither is set
    batch_size: int = 8
    max_sequences: int = 64  # cap of packed sequences per client and round
    min_sequences: int = 1  # clients with fewer are skipped and counted
    grad_clip_norm: float | None = None
    shuffle: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            self.local_steps is None or self.local_epochs is None,
            "set client.local_steps or client.local_epochs, not both",
        )
        _check(self.batch_size >= 1, "client.batch_size must be >= 1")
        _check(self.max_sequences >= self.min_sequences >= 1,
               "need client.max_sequences >= client.min_sequences >= 1")


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    name: ScheduleName = "constant"
    warmup_rounds: int = 0
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio at the last round
    decay_rate: float = 0.99  # exponential: lr * decay_rate ** (round - warmup_rounds)

    def __post_init__(self) -> None:
        _check(self.warmup_rounds >= 0, "server.schedule.warmup_rounds must be >= 0")
        _check(0 < self.decay_rate <= 1, "server.schedule.decay_rate must be in (0, 1]")


@dataclass(frozen=True, kw_only=True)
class ServerConfig(OptimizerConfig):
    # sgd (FedAvg with lr 1), momentum (FedAvgM), adam (torch's, bias-corrected), and
    # Reddi et al.'s adaptive server rules fedadam / yogi / adagrad (fl/algos/fedopt.py)
    optimizer: ServerOptimizerName = "sgd"  # type: ignore[assignment]
    lr: float = 1.0
    betas: tuple[float, float] = (0.9, 0.99)
    tau: float = 1e-3  # adaptivity of fedadam / yogi / adagrad (Reddi et al.'s tau)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.tau > 0, f"server.tau must be > 0; got {self.tau}")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
               f"server.betas must be two numbers in [0, 1); got {list(self.betas)}")


@dataclass(frozen=True, kw_only=True)
class AlgorithmConfig:
    """``algorithm: {name: fedprox, mu: 0.01}`` or ``{factory: "pkg.mod:fn", ...}``.

    Keys other than the ones below are the algorithm's own settings; they are kept in
    ``params`` (config.yaml records them there, resolved with their defaults).
    """

    name: AlgorithmName = "fedavg"
    factory: str | None = None  # "package.module:callable" returning an Algorithm
    weighting: WeightingName = "tokens"
    # Parameter-name globs that stay local (not aggregated, not server-updated), e.g.
    # ["blocks.3.*"].  See docs/training.md for the hierarchical plan.
    local_params: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.factory is not None or self.name in ALGORITHMS,
               f"algorithm.name: unknown algorithm {self.name!r}; built-ins: "
               f"{', '.join(sorted(ALGORITHMS))} (or algorithm.factory: 'pkg.mod:fn')")


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """Update processors and aggregator (``fl/strategy.py``); entries are resolved at run start.

    ``processors``: ``{name: clip, max_norm: 1.0}`` (a built-in) or
    ``{factory: "pkg.mod:fn", ...kwargs}`` (user code), applied in order.
    ``aggregator``: ``{factory: "pkg.mod:fn", ...kwargs}``; ``fn(template, **kwargs)``
    returns an ``Aggregator`` (default: the running weighted sum).
    """

    processors: tuple[dict[str, Any], ...] = ()
    aggregator: dict[str, Any] | None = None  # {name: median | trimmed_mean | krum} or factory
    selection: dict[str, Any] | None = None  # {name: power_of_choice, ...} or factory

    def __post_init__(self) -> None:
        entries = [(f"strategy.processors.{i}", e) for i, e in enumerate(self.processors)]
        entries += [(f"strategy.{k}", e) for k, e in (("aggregator", self.aggregator),
                                                      ("selection", self.selection)) if e]
        for where, entry in entries:
            _check(("name" in entry) != ("factory" in entry),
                   f"{where}: give exactly one of 'name' or 'factory'")


LoggerName = Literal["tensorboard", "wandb"]


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    loggers: tuple[LoggerName, ...] = ()  # besides metrics.jsonl/csv (fl/loggers.py)
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    progress: bool = True
    threads: int | None = None  # torch.set_num_threads; None = leave as is
    # clients of a cohort trained at once, each in its own thread with its own model copy
    # (torch releases the GIL in its kernels); the result is bit-identical to 1
    client_threads: int = 1
    deterministic: bool = False  # torch.use_deterministic_algorithms
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check(self.checkpoint_every >= 1, "run.checkpoint_every must be >= 1")
        _check(self.keep_checkpoints >= 1, "run.keep_checkpoints must be >= 1")
        _check(self.client_threads >= 1, "run.client_threads must be >= 1")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    data: DatasetConfig
    output_dir: str
    rounds: int
    cohort_size: int
    seed: int = 0
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    personalization: PersonalizationConfig = field(default_factory=PersonalizationConfig)
    run: RunConfig = field(default_factory=RunConfig)
    # Federations of federations: parsed strictly by fl/hierarchy/config.py (docs/hierarchy.md).
    hierarchy: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check(self.rounds >= 1, "rounds must be >= 1")
        _check(self.cohort_size >= 1, "cohort_size must be >= 1")

    def notes(self, num_clients: int) -> list[str]:
        """Settings that are valid but have no effect here, said once at the start of a run."""
        out = []
        if self.algorithm.name == "fedsgd":
            unused = [f"client.{n}" for n in ("local_steps", "local_epochs")
                      if getattr(self.client, n) is not None]
            out.append(
                "algorithm fedsgd: each client sends one full-batch gradient; the server "
                "optimizer (server.lr) takes the step, so client.optimizer/lr are not used"
                + (f" and {' / '.join(unused)} is ignored" if unused else "")
            )
        if self.cohort_size > num_clients:
            out.append(f"cohort_size {self.cohort_size} > {num_clients} training clients: every "
                       f"round uses all {num_clients} (metrics column 'cohort')")
        return out


def parse_config(data: dict[str, Any], overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Strictly parse a config dict after applying ``--set`` overrides (YAML-typed values)."""
    import yaml

    data = copy.deepcopy(data)
    for assignment in overrides:
        apply_override(data, assignment, yaml.safe_load)
    algo = data.get("algorithm")
    if isinstance(algo, dict):  # the algorithm's own settings go to algorithm.params
        known = {f.name for f in dataclasses.fields(AlgorithmConfig)}
        extra = {k: algo.pop(k) for k in [k for k in algo if k not in known]}
        if extra:
            algo["params"] = {**(algo.get("params") or {}), **extra}
    return from_dict(TrainConfig, data)

